"""The two demo benchmarks: UCI Adult (bundled) and a generated loan-repayment benchmark.

The lending benchmark is generated, not collected, so everything a fairness or decay evaluator
should find in it is known in advance and written down here as constants. Tests compare what
Holdout measures against these numbers.

Generative process (one applicant per row)
------------------------------------------
1. ``applied_at``: the rows of a split are spread evenly over its months (training: 2023-01 to
   2023-12; test: 2024-01 to 2025-12) at a uniformly random moment inside the month.
2. Sensitive columns, drawn independently of everything else: ``gender`` (GENDER_SHARES) and
   ``age_band`` (AGE_BAND_SHARES). Because no other feature depends on them, every difference
   in repayment between their groups comes from the penalty in step 5.
3. Applicant features: ``region``, ``employment_type``, ``loan_purpose`` (categorical);
   real annual income (log-normal), ``debt_ratio`` (Beta(2, 5)), ``credit_history_years``,
   ``loan_amount`` (a log-normal multiple of income), ``open_accounts`` and
   ``late_payments_2y`` (Poisson counts).
4. The published ``income`` and ``loan_amount`` are nominal: real values times the price level,
   which is 1 through 2023 and grows by INCOME_INFLATION_PER_MONTH every month after.
5. ``repaid`` ~ Bernoulli(sigmoid(logit)), where the logit (``_repayment_logit``) depends on
   *real* income, loan-to-income, debt ratio, history, counts and categories, minus
   GROUP_GAPS[column].logit_penalty for each applicant in a penalised group.

Known drift (test period only, ``m`` = months since December 2023)
--------------------------------------------------------------------
- Concept drift: the debt-ratio coefficient is DEBT_RATIO_COEF + DEBT_RATIO_DRIFT_PER_MONTH * m,
  so a high debt ratio, strongly predictive of default in 2023, matters less each month and
  by late 2025 no longer predicts default at all.
- Covariate drift: nominal income grows by INCOME_INFLATION_PER_MONTH per month while repayment
  depends on real income, so a model trained on 2023 increasingly over-rates applicants.
Together they make a model trained on 2023 lose accuracy steadily through 2024-2025;
REFERENCE_DECAY_PER_MONTH is how fast the logistic-regression baseline loses it.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from leaderboard.demo.build_adult import ADULT_TEST_PATH, ADULT_TRAIN_PATH, COLUMNS as ADULT_COLUMNS

TRAIN_MONTHS = pd.period_range("2023-01", "2023-12", freq="M")
TEST_MONTHS = pd.period_range("2024-01", "2025-12", freq="M")
DRIFT_START = pd.Period("2023-12", freq="M")

GENDER_SHARES = {"female": 0.49, "male": 0.51}
AGE_BAND_SHARES = {"18-25": 0.16, "26-40": 0.36, "41-60": 0.33, "61+": 0.15}
REGION_EFFECTS = {"north": 0.10, "south": -0.10, "east": 0.0, "west": 0.05, "central": -0.05}
EMPLOYMENT_EFFECTS = {"salaried": 0.30, "self-employed": -0.10, "contract": -0.20, "part-time": -0.35}
EMPLOYMENT_SHARES = {"salaried": 0.60, "self-employed": 0.15, "contract": 0.12, "part-time": 0.13}
PURPOSE_EFFECTS = {
    "home-improvement": 0.20,
    "car": 0.10,
    "debt-consolidation": -0.15,
    "education": 0.0,
    "business": -0.30,
    "other": -0.05,
}

MEDIAN_REAL_INCOME = 48_000.0
DEBT_RATIO_COEF = -8.0
DEBT_RATIO_DRIFT_PER_MONTH = 0.35
INCOME_INFLATION_PER_MONTH = 0.01


@dataclass(frozen=True)
class GroupGap:
    """A group the label process penalises, and the gap that follows in the training labels."""

    column: str
    penalised: str
    reference: str
    logit_penalty: float
    # P(repaid | reference) - P(repaid | penalised) in the training period, measured on 4 million
    # generated rows (two seeds); a split of n rows reproduces it within about 3 / sqrt(n), two
    # standard errors for the smaller age band. A model trained on these labels inherits the gap:
    # the logistic-regression baseline's positive-prediction rates on the test split differ by
    # about 0.10 between genders and 0.16 between the youngest and the other age bands.
    positive_rate_gap: float


GROUP_GAPS = {
    "gender": GroupGap("gender", penalised="female", reference="male", logit_penalty=0.6, positive_rate_gap=0.091),
    "age_band": GroupGap("age_band", penalised="18-25", reference="41-60", logit_penalty=0.8, positive_rate_gap=0.127),
}
# Metric lost per test month by the logistic-regression baseline (baselines.train_baselines):
# minus the least-squares slope of its per-month metric over 2024-01..2025-12, measured on the
# default sizes for seeds 1, 2, 3 and 7, which agree within 0.001. A month is about 30 days,
# so these are also the expected decay_per_30d.
REFERENCE_DECAY_PER_MONTH = {"accuracy": 0.005, "roc_auc": 0.008}

LENDING_SPEC = {
    "slug": "lending",
    "name": "Loan repayment (generated)",
    "description": (
        "Will an applicant repay the loan? Generated data: trained on 2023 applications and tested "
        "month by month on 2024-2025, while the effect of debt ratio fades and nominal incomes "
        "inflate. The recorded outcomes penalise women and applicants aged 18-25."
    ),
    "task": "binary",
    "target": "repaid",
    "positive_label": 1,
    "primary_metric": "roc_auc",
    # The presets that weigh more than performance keep a floor: a model that cannot tell repayers
    # from defaulters is not a candidate, however cheap or even-handed it is.
    "preset_floor": "roc_auc>=0.6",
    "feature_columns": [
        "income",
        "debt_ratio",
        "credit_history_years",
        "loan_amount",
        "open_accounts",
        "late_payments_2y",
        "region",
        "employment_type",
        "loan_purpose",
        "gender",
        "age_band",
    ],
    "sensitive_columns": ["gender", "age_band"],
    "time_column": "applied_at",
}

ADULT_SPEC = {
    "slug": "adult",
    "name": "Adult census income",
    "description": (
        "Does a person earn more than $50K a year? UCI Adult, an extract of the 1994 US census "
        "(Becker & Kohavi, 1996, doi:10.24432/C5XW20, CC BY 4.0)."
    ),
    "task": "binary",
    "target": "income",
    "positive_label": ">50K",
    "primary_metric": "accuracy",
    # Predicting "<=50K" for everyone is 76% accurate; the presets that weigh more than
    # performance ask for a model that beats that clearly.
    "preset_floor": "accuracy>=0.8",
    # fnlwgt is the census sampling weight (how many people a row stands for), assigned by the
    # survey design rather than describing the person, so it is not a feature.
    "feature_columns": [column for column in ADULT_COLUMNS if column not in ("fnlwgt", "income")],
    "sensitive_columns": ["sex", "race"],
    "time_column": None,
}


def lending_dataset(*, n_train: int = 20000, n_test: int = 24000, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The generated loan-repayment benchmark as (train, test), both sorted by ``applied_at``.

    Deterministic: the same arguments give identical frames. Each split has its own random
    stream, so changing n_train does not change the test split.
    """
    return (
        _lending_split(TRAIN_MONTHS, n_train, np.random.default_rng([seed, 0])),
        _lending_split(TEST_MONTHS, n_test, np.random.default_rng([seed, 1])),
    )


def adult_dataset() -> tuple[pd.DataFrame, pd.DataFrame]:
    """UCI Adult as (train, test), read from the Parquet files bundled with the project."""
    return pd.read_parquet(ADULT_TRAIN_PATH), pd.read_parquet(ADULT_TEST_PATH)


def _choice(rng: np.random.Generator, shares: dict[str, float], n: int) -> np.ndarray:
    return rng.choice(np.array(list(shares)), size=n, p=np.array(list(shares.values())))


def _lending_split(months: pd.PeriodIndex, n: int, rng: np.random.Generator) -> pd.DataFrame:
    month_index = rng.permutation(np.arange(n) % len(months))
    starts = months.start_time.to_numpy()[month_index]
    lengths = (months.end_time - months.start_time).to_numpy()[month_index]
    months_of_drift = np.array([max((month - DRIFT_START).n, 0) for month in months])[month_index]
    applicants = pd.DataFrame(
        {
            "applied_at": (starts + (rng.random(n) * lengths).astype("timedelta64[ns]")).astype("datetime64[us]"),
            "gender": _choice(rng, GENDER_SHARES, n),
            "age_band": _choice(rng, AGE_BAND_SHARES, n),
            "region": _choice(rng, {name: 1 / len(REGION_EFFECTS) for name in REGION_EFFECTS}, n),
            "employment_type": _choice(rng, EMPLOYMENT_SHARES, n),
            "loan_purpose": _choice(rng, {name: 1 / len(PURPOSE_EFFECTS) for name in PURPOSE_EFFECTS}, n),
            "real_income": MEDIAN_REAL_INCOME * np.exp(rng.normal(0.0, 0.45, n)),
            "loan_to_income": np.exp(rng.normal(np.log(0.35), 0.5, n)),
            "debt_ratio": rng.beta(2.0, 5.0, n),
            "credit_history_years": np.minimum(rng.gamma(2.5, 4.0, n), 45.0),
            "open_accounts": rng.poisson(4.0, n).astype("int64"),
            "late_payments_2y": rng.poisson(0.5, n).astype("int64"),
        }
    )
    repaid = rng.random(n) < 1.0 / (1.0 + np.exp(-_repayment_logit(applicants, months_of_drift)))
    price_level = (1.0 + INCOME_INFLATION_PER_MONTH) ** months_of_drift
    published = applicants.assign(
        income=np.round(applicants["real_income"] * price_level, -1),
        loan_amount=np.round(applicants["real_income"] * applicants["loan_to_income"] * price_level, -2),
        debt_ratio=applicants["debt_ratio"].round(3),
        credit_history_years=applicants["credit_history_years"].round(1),
        repaid=repaid.astype("int64"),
    )
    columns = ["applied_at", *LENDING_SPEC["feature_columns"], "repaid"]
    return published[columns].sort_values("applied_at", kind="stable", ignore_index=True)


def _repayment_logit(applicants: pd.DataFrame, months_of_drift: np.ndarray) -> np.ndarray:
    # Terms are centred on typical values so the intercept sets the base rate (about 0.65) and
    # the drifting debt-ratio term moves who repays, not how many.
    debt_ratio_coef = DEBT_RATIO_COEF + DEBT_RATIO_DRIFT_PER_MONTH * months_of_drift
    logit = (
        1.6
        + 1.3 * np.log(applicants["real_income"] / MEDIAN_REAL_INCOME)
        - 1.1 * np.log(applicants["loan_to_income"] / 0.35)
        + debt_ratio_coef * (applicants["debt_ratio"] - 2 / 7)  # 2/7 is the mean of Beta(2, 5)
        + 0.04 * (applicants["credit_history_years"] - 10.0)
        - 0.05 * (applicants["open_accounts"] - 4.0)
        - 0.7 * applicants["late_payments_2y"]
        + applicants["region"].map(REGION_EFFECTS)
        + applicants["employment_type"].map(EMPLOYMENT_EFFECTS)
        + applicants["loan_purpose"].map(PURPOSE_EFFECTS)
    )
    for gap in GROUP_GAPS.values():
        logit -= gap.logit_penalty * (applicants[gap.column] == gap.penalised)
    return logit.to_numpy(dtype=float)
