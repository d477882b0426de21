"""The reviewers' fairness report of one submission, and two submissions side by side.

Every number here is read from the stored "fairness" and "interpretability" reports that the
evaluators wrote (evaluators/fairness.py, evaluators/interpretability.py); nothing is measured or
recomputed, so the page, the JSON and the Markdown downloads and the API all say the same thing.
This module only chooses what a reviewer reads first and puts it in words. The structure keeps
full precision; the renderers format numbers with `metric` (four significant digits).
"""

from django.urls import reverse

from leaderboard.withholding import report_shown
from leaderboard.errors import Rejected
from leaderboard.models import Report, Submission
from leaderboard.objectives import OBJECTIVES
from leaderboard.templatetags.holdout import metric

REPORT_FORMAT = "holdout-fairness-report/1"

# One set of headings for the page and the Markdown, so a reviewer finds the same sections in both.
SECTION_TITLES = {
    "summary": "Summary of findings",
    "columns": "Groups by sensitive column",
    "intersections": "Intersectional groups",
    "slices": "Worst slices",
    "attribution": "What drives the predictions",
    "methodology": "Methodology",
}

# What the page and the Markdown say when a grouping section has nothing to show.
EMPTY_GROUPINGS = {
    "columns": "No sensitive column is reported.",
    "intersections": "Not reported: the benchmark has one sensitive column, or intersections are turned off.",
}
# Labels for the keys that are not leaderboard objectives (group rates, regression disparities).
LABELS = {
    "selection_rate": "Selection rate",
    "true_positive_rate": "True positive rate",
    "false_positive_rate": "False positive rate",
    "false_negative_rate": "False negative rate",
    "mean_prediction": "Mean prediction",
    "selection_rate_ratio": "Selection rate ratio",
    "worst_group_mae": "Worst-group MAE",
    "mae_gap": "MAE gap",
}
# Per-group attributions show the sensitive columns and this many of the strongest others: a
# table of every feature per group would not fit a printed page.
TOP_ATTRIBUTED_COLUMNS = 5
NOT_RECORDED = "not recorded"
# PostgreSQL's jsonb keeps no key order, so the report imposes the reading order itself: the
# primary metric first, then these, then anything else by name.
METRIC_ORDER = (
    "accuracy",
    "selection_rate",
    "true_positive_rate",
    "false_positive_rate",
    "false_negative_rate",
    "mae",
    "mean_prediction",
)
DISPARITY_ORDER = (
    "demographic_parity_difference",
    "equalized_odds_difference",
    "worst_group_accuracy",
    "accuracy_gap",
    "selection_rate_ratio",
    "worst_group_mae",
    "mae_gap",
)


class FairnessReportUnavailable(Exception):
    """Why a submission has no fairness report to show, in words a person can act on.

    `reason` is one of: no-sensitive-columns, not-enabled, pending, evaluation-failed,
    evaluator-failed, missing.
    """

    def __init__(self, submission: Submission, reason: str, message: str):
        super().__init__(message)
        self.submission, self.reason, self.message = submission, reason, message


def in_order(keys, first) -> list:
    """`keys` with those named in `first` leading, in that order, and the rest by name."""
    keys = list(keys)
    return [key for key in dict.fromkeys(first) if key in keys] + sorted(key for key in keys if key not in first)


def label(key: str) -> str:
    if key in OBJECTIVES:
        return OBJECTIVES[key].label
    if key in LABELS:
        return LABELS[key]
    base, bracket, rest = key.partition("[")
    return base.replace("_", " ").capitalize() + (f" [{rest}" if bracket else "")


# --- One submission's report ---------------------------------------------------------------


def fairness_report(submission: Submission) -> dict:
    """Every section of the reviewers' report as a JSON-serialisable dict; raises
    FairnessReportUnavailable when the submission has no fairness report."""
    stored = _fairness_stored(submission)
    document = stored.document
    interpretability = submission.reports.filter(evaluator="interpretability").first()
    primary = document["primary_metric"]["used"]
    metric_order = (primary, *METRIC_ORDER)
    groupings = [_grouping(grouping, metric_order) for grouping in document["groupings"]]
    return {
        "format": REPORT_FORMAT,
        "submission": _submission_identity(submission),
        "benchmark": _benchmark_identity(submission),
        "links": _links(submission),
        "task": document["task"],
        "rows": document["rows"],
        "primary_metric": {**document["primary_metric"], "label": label(primary)},
        "summary": _summary(document, interpretability, submission.benchmark.sensitive_columns),
        "overall": [
            {"metric": key, "label": label(key), **document["overall"][key]}
            for key in in_order(document["overall"], metric_order)
        ],
        "columns": [grouping for grouping in groupings if grouping["kind"] == "column"],
        "intersections": [grouping for grouping in groupings if grouping["kind"] == "intersection"],
        "worst_slices": _worst_slices(document["worst_slices"]),
        "attribution": _attribution(submission, interpretability),
        "methodology": _methodology(stored, interpretability, metric_order),
        "not_reported": [
            {"key": key, "label": label(key), "reason": document["not_reported"][key]}
            for key in in_order(document["not_reported"], DISPARITY_ORDER)
        ],
    }


def _fairness_stored(submission: Submission) -> Report:
    benchmark = submission.benchmark
    if not benchmark.sensitive_columns:
        raise FairnessReportUnavailable(
            submission,
            "no-sensitive-columns",
            f"The benchmark {benchmark.name} declares no sensitive columns, so there are no groups to compare "
            "and no fairness report. Its owner can name sensitive columns in the admin; submissions evaluated "
            "after that get a report.",
        )
    if "fairness" not in benchmark.evaluators:
        raise FairnessReportUnavailable(
            submission,
            "not-enabled",
            f"The benchmark {benchmark.name} does not run the fairness evaluator; its owner can enable it in "
            "the admin.",
        )
    report = submission.reports.filter(evaluator="fairness").first()
    if report is not None and report.error:
        raise FairnessReportUnavailable(
            submission, "evaluator-failed", f"The fairness evaluator failed on {submission.name}: {report.error}"
        )
    if report is not None:
        return report_shown(report)
    if not submission.is_finished:
        raise FairnessReportUnavailable(
            submission,
            "pending",
            f"{submission.name} is still being evaluated (status {submission.status}, stage {submission.stage}); "
            "its fairness report appears when the fairness evaluator has run, usually within a few minutes.",
        )
    if submission.status == Submission.Status.FAILED:
        raise FairnessReportUnavailable(
            submission,
            "evaluation-failed",
            f"The evaluation of {submission.name} failed before fairness was measured: {submission.error}",
        )
    raise FairnessReportUnavailable(
        submission,
        "missing",
        f"{submission.name} was evaluated without the fairness evaluator (it was probably enabled later); "
        "submit the model again to get a fairness report.",
    )


def _submission_identity(submission: Submission) -> dict:
    return {
        "id": str(submission.id),
        "name": submission.name,
        "owner": submission.owner.username,
        "is_baseline": submission.is_baseline,
        "status": submission.status,
        "artifact_format": submission.artifact_format,
        "artifact_sha256": submission.artifact_sha256,
        "created_at": _timestamp(submission.created_at),
        "finished_at": _timestamp(submission.finished_at),
    }


def _benchmark_identity(submission: Submission) -> dict:
    benchmark = submission.benchmark
    return {
        "slug": benchmark.slug,
        "name": benchmark.name,
        "task": benchmark.task,
        "sensitive_columns": list(benchmark.sensitive_columns),
        "test_rows": benchmark.test_rows,
    }


def _links(submission: Submission) -> dict:
    """Site-relative, so the JSON is the same whichever host served it."""
    pk = submission.id
    return {
        "submission": reverse("submission-detail", args=[pk]),
        "benchmark": reverse("benchmark-detail", args=[submission.benchmark.slug]),
        "report": reverse("fairness-report", args=[pk]),
        "json": reverse("fairness-report-json", args=[pk]),
        "markdown": reverse("fairness-report-markdown", args=[pk]),
        "compare": f"{reverse('fairness-compare')}?a={pk}",
        "api_fairness": reverse("api-report-detail", args=[pk, "fairness"]),
        "api_interpretability": reverse("api-report-detail", args=[pk, "interpretability"]),
    }


def _timestamp(moment) -> str | None:
    return moment.isoformat() if moment else None


# --- Summary -------------------------------------------------------------------------------


def _summary(document: dict, interpretability: Report | None, sensitive_columns: list[str]) -> dict:
    four_fifths = _four_fifths(document, sensitive_columns)
    gaps = [_gap(key, document["scalars"][key]) for key in in_order(document["scalars"], DISPARITY_ORDER)]
    small = _small_groups(document)
    slices = document["worst_slices"]["slices"]
    worst_slice = _slice(slices[0], document["worst_slices"]["metric"]) if slices else None
    share = _attribution_share(interpretability)
    summary = {
        "four_fifths": four_fifths,
        "gaps": gaps,
        "small_groups": small,
        "worst_slice": worst_slice,
        "sensitive_attribution_share": share,
    }
    summary["headlines"] = _headlines(summary, document["worst_slices"]["metric"])
    return summary


def _four_fifths(document: dict, sensitive_columns: list[str]) -> dict:
    stored = document["four_fifths"]
    if stored is None:
        return {
            "applies": False,
            "verdict": "not applicable",
            "passes": None,
            "note": document["not_reported"].get("four_fifths", "the four-fifths rule applies to binary tasks only"),
            "columns": [],
        }
    columns = [
        {"column": column, **stored["columns"][column], "verdict": _verdict(stored["columns"][column]["passes"])}
        for column in in_order(stored["columns"], sensitive_columns)
    ]
    return {
        "applies": True,
        "verdict": _verdict(stored["passes"]),
        "passes": stored["passes"],
        "threshold": stored["threshold"],
        "rule": stored["rule"],
        "columns": columns,
    }


def _verdict(passes: bool | None) -> str:
    return {True: "passes", False: "fails", None: "no verdict"}[passes]


def _gap(key: str, scalar: dict) -> dict:
    objective = OBJECTIVES.get(key)
    groups = scalar.get("groups") or {}
    return {
        "key": key,
        "label": label(key),
        # The disparities outside the objective catalogue (worst-group MAE, MAE gap) are lower-is-better.
        "higher_is_better": objective.higher_is_better if objective else False,
        "value": scalar["value"],
        "interval": scalar["interval"],
        "column": scalar.get("column"),
        "groups": groups,
        "between": _between(groups),
    }


def _between(groups: dict) -> str:
    """Which groups give a disparity, as a reader says it."""
    if not groups:
        return ""
    if "worst" in groups:
        return f"worst group: {groups['worst']}" if groups["worst"] is not None else ""
    if groups.get("lowest") is None:
        return ""
    text = f"{groups['lowest']} (lowest) vs {groups['highest']} (highest)"
    return f"{label(groups['rate'])}: {text}" if groups.get("rate") else text


def _small_groups(document: dict) -> dict:
    flagged = [
        {"grouping": grouping["name"], "label": group["label"], "count": group["count"]}
        for grouping in document["groupings"]
        for group in grouping["groups"]
        if group["small"]
    ]
    return {"min_group_size": document["methodology"]["min_group_size"], "groups": flagged}


def _attribution_share(interpretability: Report | None) -> dict | None:
    if interpretability is None or interpretability.error:
        return None
    document = interpretability.document
    key = "sensitive_attribution_share"
    return {"value": document["metrics"][key], "interval": document.get("intervals", {}).get(key)}


def _headlines(summary: dict, slice_metric: str) -> list[str]:
    """The findings in sentences, the first thing a reviewer reads."""
    lines = [_four_fifths_headline(summary["four_fifths"])]
    for gap in summary["gaps"]:
        where = f" on {gap['column']}" if gap["column"] else ""
        between = f" ({gap['between']})" if gap["between"] else ""
        lines.append(f"{gap['label']}: {metric(gap['value'])} {_ci(gap['interval'])}{where}{between}.")
    small = summary["small_groups"]
    if small["groups"]:
        names = ", ".join(
            f"{group['label']} in {group['grouping']} ({group['count']} rows)" for group in small["groups"]
        )
        lines.append(
            f"Small groups (fewer than {small['min_group_size']} rows), listed but left out of the gaps: {names}."
        )
    else:
        lines.append(f"No group has fewer than {small['min_group_size']} rows.")
    worst = summary["worst_slice"]
    if worst:
        lines.append(
            f"Worst slice: {worst['column']} = {worst['value']} ({worst['count']} rows), {label(slice_metric)} "
            f"{metric(worst['estimate']['value'])} {_ci(worst['estimate']['interval'])}, "
            f"{metric(worst['difference']['value'])} against the whole test set."
        )
    share = summary["sensitive_attribution_share"]
    if share:
        lines.append(
            f"The sensitive columns carry {metric(share['value'])} {_ci(share['interval'])} of the total mean |SHAP|."
        )
    return lines


def _four_fifths_headline(four_fifths: dict) -> str:
    if not four_fifths["applies"]:
        return f"Four-fifths rule: not applicable ({four_fifths['note']})."
    columns = "; ".join(
        f"{entry['column']} {entry['verdict']} at {metric(entry['ratio']['value'])} {_ci(entry['ratio']['interval'])}"
        for entry in four_fifths["columns"]
    )
    return f"Four-fifths rule: {four_fifths['verdict']}" + (f" ({columns})." if columns else ".")


def _ci(interval) -> str:
    return f"(95% CI {interval_text(interval)})" if interval else "(no interval)"


def interval_text(interval) -> str:
    return f"{metric(interval[0])} – {metric(interval[1])}" if interval else "—"


# --- Groups --------------------------------------------------------------------------------


def _grouping(stored: dict, metric_order: tuple) -> dict:
    reference = stored["reference"]["group"]
    metrics = in_order(stored["groups"][0]["metrics"], metric_order) if stored["groups"] else []
    disparities = stored.get("disparities") or {}
    return {
        "name": stored["name"],
        "kind": stored["kind"],
        "columns": stored["columns"],
        "reference": stored["reference"],
        "metrics": [{"key": key, "label": label(key)} for key in metrics],
        "groups": [{**group, "is_reference": group["label"] == reference} for group in stored["groups"]],
        "disparities": [
            {"key": key, "label": label(key), **disparities[key], "between": _between(disparities[key])}
            for key in in_order(disparities, DISPARITY_ORDER)
        ],
        "disparities_note": stored.get("disparities_note"),
    }


# --- Worst slices --------------------------------------------------------------------------


def _worst_slices(stored: dict) -> dict:
    return {
        "metric": stored["metric"],
        "label": label(stored["metric"]),
        "higher_is_better": stored["higher_is_better"],
        "min_size": stored["min_size"],
        "considered": stored["considered"],
        "note": stored["note"],
        "slices": [_slice(found, stored["metric"]) for found in stored["slices"]],
    }


def _slice(found: dict, metric_key: str) -> dict:
    """A slice with its metric under a fixed key, whatever the primary metric is called."""
    return {
        "column": found["column"],
        "value": found["value"],
        "count": found["count"],
        "share": found["share"],
        "estimate": found[metric_key],
        "overall": found["overall"],
        "difference": found["difference"],
    }


# --- Attributions --------------------------------------------------------------------------


def _attribution(submission: Submission, stored: Report | None) -> dict:
    if stored is None:
        if "interpretability" not in submission.benchmark.evaluators:
            return {"state": "not enabled", "message": "This benchmark does not run the interpretability evaluator."}
        if not submission.is_finished:
            return {"state": "pending", "message": "The attributions are still being computed."}
        return {"state": "missing", "message": "The evaluation ended without attributions."}
    if stored.error:
        return {"state": "failed", "message": f"The interpretability evaluator failed: {stored.error}"}
    document = stored.document
    sensitive = document["sensitive_features"]
    by_group = document["mean_abs_shap_by_group"]
    ranking = [
        {"rank": position, **entry, "sensitive": entry["column"] in sensitive}
        for position, entry in enumerate(document["mean_abs_shap"], start=1)
    ]
    strongest = [entry["column"] for entry in ranking if not entry["sensitive"]][:TOP_ATTRIBUTED_COLUMNS]
    shown = [entry["column"] for entry in ranking if entry["sensitive"] or entry["column"] in strongest]
    return {
        "state": "measured",
        "sensitive_features": sensitive,
        "note": document["sensitive_attribution_note"],
        "share": _attribution_share(stored),
        "shap_features_90": {
            "value": document["metrics"].get("shap_features_90"),
            "interval": document.get("intervals", {}).get("shap_features_90"),
        },
        "rows_explained": document.get("rows_explained"),
        "output": document.get("output"),
        "ranking": ranking,
        "shown_columns": shown,
        "by_group": [
            {"column": column, "groups": by_group[column]}
            for column in in_order(by_group, submission.benchmark.sensitive_columns)
        ],
    }


# --- Methodology ---------------------------------------------------------------------------


def _methodology(stored: Report, interpretability: Report | None, metric_order: tuple) -> dict:
    document = stored.document
    method = document["methodology"]
    definition_order = (*metric_order, "recall[c]", "selection_rate[c]", "vs_overall", "vs_reference", *DISPARITY_ORDER)
    versions = method.get("library_versions") or {}
    libraries = [
        {"library": name, "version": versions.get(name)} for name in ("fairlearn", "scikit-learn", "numpy", "pandas")
    ]
    explained = interpretability.document if interpretability is not None and not interpretability.error else None
    return {
        "test_rows": document["rows"],
        "primary_metric": document["primary_metric"],
        "resamples": method["resamples"],
        "seed": method["seed"],
        "interval": method["interval"],
        "min_group_size": method["min_group_size"],
        "small_groups": method["small_groups"],
        "reference_groups": {
            name: method["reference_groups"][name]
            for name in in_order(method["reference_groups"], [grouping["name"] for grouping in document["groupings"]])
        },
        "worst_over_columns": method["worst_over_columns"],
        "numeric_bins": method["numeric_bins"],
        "intersections": method["intersections"],
        "missing_values": method["missing_values"],
        "null_values": method["null_values"],
        "four_fifths_rule": (document["four_fifths"] or {}).get("rule"),
        "slices": {key: document["worst_slices"][key] for key in ("note", "min_size", "considered")},
        "definitions": [
            {"key": key, "label": label(key), "definition": method["definitions"][key]}
            for key in in_order(method["definitions"], definition_order)
        ],
        "library_versions": libraries,
        "interpretability": _explainer_method(explained),
        "fairness_seconds": stored.seconds,
        "evaluated_at": _timestamp(stored.created_at),
    }


def _explainer_method(document: dict | None) -> dict | None:
    if document is None:
        return None
    keys = (
        "explainer",
        "method",
        "feature_perturbation",
        "output",
        "rows_explained",
        "seed",
        "background",
        "background_rows_used",
        "permutations",
        "evaluations_per_row",
        "tolerance",
        "seconds",
        "budget",
        "resamples",
        "additivity",
    )
    return {key: document.get(key) for key in keys}


# --- Two submissions side by side ----------------------------------------------------------


def fairness_comparison(a: Submission, b: Submission) -> dict:
    """Both reports and their findings paired row by row; the same benchmark is required, since
    only then are the groups, rows and resamples the same."""
    if a.benchmark_id != b.benchmark_id:
        raise Rejected(
            f"{a.name} is on {a.benchmark.name} and {b.name} on {b.benchmark.name}: only submissions of the same "
            "benchmark share the test rows and groups a fairness comparison needs. Choose a second submission "
            f"of {a.benchmark.name}."
        )
    if a.pk == b.pk:
        raise Rejected(f"Both sides are {a.name}; choose a different submission to compare it with.")
    left, right = fairness_report(a), fairness_report(b)
    return {
        "benchmark": left["benchmark"],
        "a": left,
        "b": right,
        "primary_metric": left["primary_metric"],
        "four_fifths": _paired_four_fifths(left, right),
        "gaps": _paired_by(left["summary"]["gaps"], right["summary"]["gaps"], "key"),
        "groupings": [
            _paired_grouping(grouping, _named(right, grouping["name"]))
            for grouping in left["columns"] + left["intersections"]
        ],
        "attribution": {
            "a": left["summary"]["sensitive_attribution_share"],
            "b": right["summary"]["sensitive_attribution_share"],
        },
    }


def _paired_four_fifths(left: dict, right: dict) -> dict:
    a, b = left["summary"]["four_fifths"], right["summary"]["four_fifths"]
    return {"a": a["verdict"], "b": b["verdict"], "columns": _paired_by(a["columns"], b["columns"], "column")}


def _paired_by(left: list[dict], right: list[dict], key: str) -> list[dict]:
    a, b = {entry[key]: entry for entry in left}, {entry[key]: entry for entry in right}
    return [{"key": name, "a": a.get(name), "b": b.get(name)} for name in dict.fromkeys([*a, *b])]


def _named(report: dict, name: str) -> dict | None:
    return next(
        (grouping for grouping in report["columns"] + report["intersections"] if grouping["name"] == name), None
    )


def _paired_grouping(left: dict, right: dict | None) -> dict:
    """The primary metric and, where the task has one, the selection rate of every group."""
    keys = [entry["key"] for entry in left["metrics"]]
    shown = [key for key in (keys[0], "selection_rate") if key in keys] if keys else []
    return {
        "name": left["name"],
        "kind": left["kind"],
        "reference": left["reference"],
        "metrics": [{"key": key, "label": label(key)} for key in shown],
        "groups": _paired_by(left["groups"], right["groups"] if right else [], "label"),
    }


# --- Markdown ------------------------------------------------------------------------------


def fairness_report_markdown(report: dict) -> str:
    """The report as GitHub-flavoured Markdown: the same sections and numbers as the page."""
    parts = [
        _md_header(report),
        _md_summary(report),
        *(_md_groupings(SECTION_TITLES[kind], report[kind], EMPTY_GROUPINGS[kind]) for kind in EMPTY_GROUPINGS),
        _md_slices(report["worst_slices"]),
        _md_attribution(report["attribution"]),
        _md_methodology(report["methodology"], report["not_reported"]),
    ]
    return "\n\n".join(part.strip("\n") for part in parts) + "\n"


def _cell(value) -> str:
    """Table cells must not break the row: pipes escaped, line breaks flattened."""
    text = "—" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(_cell(cell) for cell in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _md_header(report: dict) -> str:
    submission, benchmark, links = report["submission"], report["benchmark"], report["links"]
    primary = report["primary_metric"]
    note = f" ({primary['note']})" if primary.get("note") else ""
    return "\n".join(
        [
            f"# Fairness report: {submission['name']}",
            "",
            f"Submission **{submission['name']}** (`{submission['id']}`) by {submission['owner']} on the benchmark "
            f"**{benchmark['name']}** (`{benchmark['slug']}`, {report['task']}), {report['rows']} test rows. "
            f"Groups are ranked on {primary['label']}{note}. Sensitive columns: "
            f"{', '.join(benchmark['sensitive_columns'])}.",
            "",
            f"Page: {links['report']} · JSON: {links['json']} · Markdown: {links['markdown']} · "
            f"Submission: {links['submission']}",
        ]
    )


def _md_summary(report: dict) -> str:
    summary = report["summary"]
    lines = [f"## {SECTION_TITLES['summary']}", ""]
    lines += [f"- {line}" for line in summary["headlines"]]
    four_fifths = summary["four_fifths"]
    if four_fifths["applies"]:
        lines += ["", f"### Four-fifths rule: {four_fifths['verdict']}", "", four_fifths["rule"], ""]
        lines.append(
            _table(
                ["Column", "Selection-rate ratio", "95% CI", "Lowest", "Highest", "Verdict"],
                [
                    [
                        e["column"],
                        metric(e["ratio"]["value"]),
                        interval_text(e["ratio"]["interval"]),
                        e["lowest"],
                        e["highest"],
                        e["verdict"],
                    ]
                    for e in four_fifths["columns"]
                ],
            )
        )
    lines += ["", "### Largest gaps", ""]
    lines.append(
        _table(
            ["Measure", "Value", "95% CI", "Column", "Groups"],
            [
                [gap["label"], metric(gap["value"]), interval_text(gap["interval"]), gap["column"], gap["between"]]
                for gap in summary["gaps"]
            ],
        )
    )
    small = summary["small_groups"]
    lines += ["", f"### Small groups (fewer than {small['min_group_size']} rows)", ""]
    if small["groups"]:
        lines.append(
            _table(["Grouping", "Group", "Rows"], [[g["grouping"], g["label"], g["count"]] for g in small["groups"]])
        )
    else:
        lines.append("None.")
    return "\n".join(lines)


def _group_label(group: dict) -> str:
    flags = [flag for flag, on in (("reference", group["is_reference"]), ("small", group["small"])) if on]
    return group["label"] + (f" ({', '.join(flags)})" if flags else "")


def _md_groupings(title: str, groupings: list[dict], empty: str) -> str:
    lines = [f"## {title}", ""]
    if not groupings:
        return "\n".join([*lines, empty])
    for grouping in groupings:
        reference = grouping["reference"]
        lines += [
            f"### {grouping['name']}",
            "",
            f"Reference group: {reference['group']} (chosen by {reference['chosen_by']}).",
            "",
        ]
        if grouping["disparities"]:
            lines += [
                _table(
                    ["Gap measure", "Value", "95% CI", "Groups"],
                    [
                        [d["label"], metric(d["value"]), interval_text(d["interval"]), d["between"]]
                        for d in grouping["disparities"]
                    ],
                ),
                "",
            ]
        elif grouping["disparities_note"]:
            lines += [f"No gaps: {grouping['disparities_note']}.", ""]
        for entry in grouping["metrics"]:
            lines += [f"#### {entry['label']} by {grouping['name']}", "", _md_group_table(grouping, entry["key"]), ""]
    return "\n".join(lines)


def _md_group_table(grouping: dict, key: str) -> str:
    rows = []
    for group in grouping["groups"]:
        measured = group["metrics"][key]
        versus = measured["vs_reference"]
        rows.append(
            [
                _group_label(group),
                group["count"],
                metric(group["share"]),
                metric(measured["value"]),
                interval_text(measured["interval"]),
                metric(versus["difference"]["value"]),
                interval_text(versus["difference"]["interval"]),
                metric(versus["ratio"]["value"]),
                interval_text(versus["ratio"]["interval"]),
            ]
        )
    header = [
        "Group",
        "Rows",
        "Share",
        "Value",
        "95% CI",
        "Difference vs reference",
        "95% CI",
        "Ratio vs reference",
        "95% CI",
    ]
    return _table(header, rows)


def _md_slices(slices: dict) -> str:
    lines = [f"## {SECTION_TITLES['slices']}", "", f"{slices['considered']} slices considered: {slices['note']}.", ""]
    if not slices["slices"]:
        return "\n".join([*lines, "No slice is large enough to list."])
    rows = [
        [
            s["column"],
            s["value"],
            s["count"],
            metric(s["share"]),
            metric(s["estimate"]["value"]),
            interval_text(s["estimate"]["interval"]),
            metric(s["difference"]["value"]),
            interval_text(s["difference"]["interval"]),
        ]
        for s in slices["slices"]
    ]
    header = ["Column", "Slice", "Rows", "Share", slices["label"], "95% CI", "Difference vs all rows", "95% CI"]
    return "\n".join([*lines, _table(header, rows)])


def _md_attribution(attribution: dict) -> str:
    lines = [f"## {SECTION_TITLES['attribution']}", ""]
    if attribution["state"] != "measured":
        return "\n".join([*lines, attribution["message"]])
    share, features = attribution["share"], attribution["shap_features_90"]
    lines += [
        f"- Share of the total mean |SHAP| carried by the sensitive columns: {metric(share['value'])} "
        f"{_ci(share['interval'])}. {attribution['note']}",
        f"- Columns carrying 90% of the total mean |SHAP|: {metric(features['value'])} {_ci(features['interval'])}.",
        f"- Rows explained: {attribution['rows_explained']}.",
        "",
        "### Mean |SHAP| by column",
        "",
        _table(
            ["Rank", "Column", "Mean |SHAP|", "Sensitive"],
            [
                [e["rank"], e["column"], metric(e["mean_abs_shap"]), "yes" if e["sensitive"] else ""]
                for e in attribution["ranking"]
            ],
        ),
    ]
    shown = attribution["shown_columns"]
    for by_group in attribution["by_group"]:
        rows = [
            [group["group"], group["rows"], *(metric(group["mean_abs_shap"].get(column)) for column in shown)]
            for group in by_group["groups"]
        ]
        lines += [
            "",
            f"### Mean |SHAP| by {by_group['column']} group",
            "",
            _table(["Group", "Rows explained", *shown], rows),
        ]
    return "\n".join(lines)


def _md_methodology(method: dict, not_reported: list[dict]) -> str:
    primary = method["primary_metric"]
    lines = [
        f"## {SECTION_TITLES['methodology']}",
        "",
        f"- Test rows: {method['test_rows']}; primary metric requested {primary['requested']}, used {primary['used']}"
        + (f" ({primary['note']})" if primary.get("note") else "")
        + ".",
        f"- Bootstrap: {method['resamples']} resamples, seed {method['seed']}. {method['interval']}",
        f"- Small groups: {method['small_groups']}.",
        "- Reference groups: "
        + "; ".join(f"{name}: {group}" for name, group in method["reference_groups"].items())
        + ".",
        f"- Scalars: {method['worst_over_columns']}.",
        f"- Numeric sensitive columns are cut into at most {method['numeric_bins']} quantile bins; "
        f"intersections {'reported' if method['intersections'] else 'not reported'}.",
        f"- Missing values: {method['missing_values']}.",
        f"- Null values: {method['null_values']}.",
    ]
    if method["four_fifths_rule"]:
        lines.append(f"- Four-fifths rule: {method['four_fifths_rule']}")
    lines.append(f"- Worst slices: {method['slices']['note']}.")
    lines += [
        "",
        "### Definitions",
        "",
        _table(["Term", "Definition"], [[d["label"], d["definition"]] for d in method["definitions"]]),
    ]
    lines += [
        "",
        "### Library versions",
        "",
        _table(
            ["Library", "Version"], [[v["library"], v["version"] or NOT_RECORDED] for v in method["library_versions"]]
        ),
    ]
    explainer = method["interpretability"]
    if explainer:
        lines += [
            "",
            "### Attributions",
            "",
            _table(["Setting", "Value"], [[k, _plain(v)] for k, v in explainer.items()]),
        ]
    if not_reported:
        lines += [
            "",
            "### Not reported",
            "",
            _table(["Measure", "Why"], [[n["label"], n["reason"]] for n in not_reported]),
        ]
    return "\n".join(lines)


def _plain(value) -> str:
    """A nested setting as one line of key: value pairs."""
    if isinstance(value, dict):
        return ", ".join(f"{key}: {_plain(item)}" for key, item in value.items())
    return "—" if value is None else str(value)
