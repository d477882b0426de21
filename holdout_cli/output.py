"""What people read: plain-text tables, the progress line, gate verdicts."""

import sys
import time
from typing import TextIO

from holdout_cli.gates import fmt, higher_is_better

# A line at least this often when the output is a log file rather than a terminal, so a CI log
# shows the job is alive without filling up with one line per poll.
LOG_PROGRESS_SECONDS = 30


def table(headers: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]

    def line(cells) -> str:
        padded = [str(c).rjust(w) if i in right else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(row) for row in rows)])


def interval_text(interval) -> str:
    if not interval:
        return ""
    low, high = interval
    return f"[{fmt(low)}, {fmt(high)}]"


def rank_text(rank: dict | list | None) -> str:
    if isinstance(rank, (list, tuple)) and len(rank) == 2:
        rank = {"rank": rank[0], "of": rank[1]}
    if not isinstance(rank, dict) or rank.get("rank") is None:
        return "-"
    return f"{rank['rank']} of {rank['of']}"


def submission_header(submission: dict) -> str:
    lines = [f"{submission['name']} ({submission['id']}) on {submission['benchmark']}: {submission['status']}"]
    if submission.get("web_url"):
        lines.append(f"  {submission['web_url']}")
    if submission["status"] == "failed":
        fault = f", {submission['fault']} fault" if submission.get("fault") else ""
        lines.append(
            f"  failed at stage {submission.get('stage') or '?'}{fault}: {submission.get('error') or 'no reason given'}"
        )
    elif submission["status"] in ("queued", "running"):
        lines.append(f"  {progress_text(submission)}")
    return "\n".join(lines)


def objectives_table(submission: dict, objectives: list[dict], standing: dict | None) -> str:
    """Every objective the benchmark measures, with its interval and this submission's rank on it."""
    metrics, intervals = submission.get("metrics") or {}, submission.get("intervals") or {}
    ranks = (standing or {}).get("objective_ranks") or {}
    withheld = set(submission.get("withheld") or [])
    primary = ((submission.get("released") or {}).get("primary") or {}).get("metric")

    def shown(key: str) -> str:
        if key not in withheld:
            return "measured"
        return "Ladder" if key == primary else "rounded"

    rows = []
    for objective in objectives:
        key = objective["key"]
        arrow = "higher" if higher_is_better(objective) else "lower"
        rows.append(
            [key, arrow, fmt(metrics.get(key)), shown(key), interval_text(intervals.get(key)), rank_text(ranks.get(key))]
        )
    # Measured values the benchmark does not list (an older objective set) are still shown.
    listed = {objective["key"] for objective in objectives}
    for key in sorted(set(metrics) - listed):
        rows.append([key, "", fmt(metrics[key]), shown(key), interval_text(intervals.get(key)), "-"])
    headers = ["objective", "better", "value", "released", "95% interval", "rank"]
    if not ranks:
        # A server that does not send per-objective ranks: no column of dashes.
        headers, rows = headers[:-1], [row[:-1] for row in rows]
    if not withheld:
        # Everything is as measured (an open benchmark): the column would say so on every row.
        headers, rows = headers[:3] + headers[4:], [row[:3] + row[4:] for row in rows]
    table_text = table(headers, rows, right={2})
    errors = submission.get("report_errors") or {}
    notes = [f"  {evaluator} not measured: {error}" for evaluator, error in errors.items()]
    return "\n".join([table_text, *notes])


def holdout_text(submission: dict) -> str:
    """On a guarded benchmark: what the Ladders released, what is withheld, and the holdout budget."""
    released, budget = submission.get("released") or {}, submission.get("holdout_budget")
    if not released and not budget:
        return ""
    lines = ["Guarded benchmark: scores on its public rows; exact values are withheld until it closes."]
    for target in ("primary", "utility"):
        release = released.get(target)
        if release:
            lines.append(f"  {release.get('metric', target)} released: {fmt(release.get('value'))} ({release.get('reason', '')})")
    withheld = submission.get("withheld") or []
    if withheld:
        lines.append(f"  withheld (Ladder or rounded, no interval): {', '.join(withheld)}")
    if budget:
        cap = f" of {budget['cap']}, {budget['left']} left" if budget.get("cap") is not None else ", no cap"
        pending = f", {budget['pending']} on the way" if budget.get("pending") else ""
        lines.append(
            f"  holdout budget: {budget['used']} releases used ({budget['ladder_steps'].get('primary', 0)} + "
            f"{budget['ladder_steps'].get('utility', 0)} Ladder steps, {budget['reports']} reports){pending}{cap}"
        )
    return "\n".join(lines)


def standing_text(standing: dict | None) -> str:
    if not standing:
        return "Not ranked on the default leaderboard."
    if standing.get("unscored"):
        return f"Not ranked on the default leaderboard: {standing['unscored']}"
    if standing.get("rank") is None:
        return "Not ranked on the default leaderboard."
    tied = " (tied)" if standing.get("tied") else ""
    of = f" of {standing['ranked_count']}" if standing.get("ranked_count") else ""
    score = ""
    if standing.get("score") is not None:
        score = f", score {fmt(standing['score'])} {interval_text(standing.get('score_interval'))}".rstrip()
    return f"Rank on the default leaderboard: {standing['rank']}{of}{tied}{score}"


def gates_text(verdicts: list[dict], *, strict: bool) -> str:
    """The server's verdicts, each with what makes it unsure (within noise, unknown noise) under it."""
    rule = "the pessimistic bound (--strict)" if strict else "the point estimate (--strict: the pessimistic bound)"
    lines = [f"Gates (within noise: decided by {rule}):"]
    for verdict in verdicts:
        mark = "PASS" if verdict["passed"] else "FAIL"
        lines.append(f"  {mark}  {verdict['gate']}: {verdict['reason']}")
        if verdict["warning"]:
            lines.append(f"        ! {verdict['warning']}")
    return "\n".join(lines)


def progress_text(submission: dict) -> str:
    progress = submission.get("progress")
    percent = f" {progress * 100:.0f}%" if isinstance(progress, (int, float)) else ""
    stage = f" {submission['stage']}" if submission.get("stage") not in (None, "", submission["status"]) else ""
    return f"{submission['status']}{stage}{percent}".strip()


class Progress:
    """One line rewritten in place on a terminal; a line per change (or every 30 s) in a log."""

    def __init__(self, stream: TextIO = sys.stderr):
        self.stream = stream
        self.tty = stream.isatty()
        self.started = time.monotonic()
        self.last_text = None
        self.last_printed = 0.0

    def update(self, submission: dict) -> None:
        text = progress_text(submission)
        elapsed = time.monotonic() - self.started
        if self.tty:
            self.stream.write(f"\r\033[K{text} ({elapsed:.0f} s)")
            self.stream.flush()
        elif text != self.last_text or elapsed - self.last_printed >= LOG_PROGRESS_SECONDS:
            print(f"{text} ({elapsed:.0f} s)", file=self.stream, flush=True)
            self.last_printed = elapsed
        self.last_text = text

    def done(self) -> None:
        if self.tty and self.last_text is not None:
            self.stream.write("\r\033[K")
            self.stream.flush()


def leaderboard_table(board: dict) -> str:
    weighted = [key for key, weight in board.get("weights", {}).items() if weight]
    headers = ["rank", "name", "score", "95% interval", *weighted, "id"]
    rows = [
        _board_row(entry, weighted, rank=f"{entry['rank']}{'=' if entry.get('tied') else ''}")
        for entry in board["entries"]
    ]
    lines = [
        f"{board['benchmark']}: method {board['method']}, weights "
        + ", ".join(f"{key}:{board['weights'][key]:g}" for key in weighted)
        + (f", constraints {', '.join(board['constraints'])}" if board.get("constraints") else ""),
        table(headers, rows, right={2, *range(4, 4 + len(weighted))}),
    ]
    if board.get("pages", 1) > 1:
        lines.append(f"page {board['page']} of {board['pages']} ({board['ranked_count']} ranked)")
    for entry in board.get("excluded") or []:
        lines.append(
            f"excluded: {entry['submission']['name']} ({entry['submission']['id']}) breaks {', '.join(entry.get('excluded_by') or [])}"
        )
    for entry in board.get("unscored") or []:
        lines.append(f"unscored: {entry['submission']['name']} ({entry['submission']['id']})")
    return "\n".join(lines)


def _board_row(entry: dict, keys: list[str], rank: str) -> list[str]:
    metrics = entry.get("metrics") or {}
    return [
        rank,
        entry["submission"]["name"],
        fmt(entry.get("score")),
        interval_text(entry.get("score_interval")),
        *(fmt(metrics.get(key)) for key in keys),
        entry["submission"]["id"],
    ]


def benchmarks_table(benchmarks: list[dict]) -> str:
    rows = [
        [b["slug"], b["name"], b["task"], b.get("primary_metric") or "", str(len(b.get("objectives") or []))]
        for b in benchmarks
    ]
    return table(["slug", "name", "task", "primary metric", "objectives"], rows)
