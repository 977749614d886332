"""Outcome analysis of an experiment: per-variant rates, lift over control with a confidence
interval, a two-proportion z-test and a verdict by a stated rule.

Rule, for each variant against control on the experiment's success metric, at level
``alpha / (variants - 1)`` (Bonferroni: several variants never raise the chance of a false
rollout):

- ``keep_testing`` until both arms have ``min_sample_size`` exposed users;
- ``roll_out`` when the difference is significant and the relative lift (its improvement, for a
  lower-is-better metric) is at least ``min_lift``;
- ``stop`` when the variant is significantly worse;
- ``keep_testing`` otherwise (no significant difference, or one smaller than ``min_lift``).

The verdict is re-read every night on all exposures so far, so stopping at the first ``roll_out``
is a repeated test: fix the sample size beforehand (``min_sample_size``) and read the verdict then.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import pandas as pd
from scipy.stats import norm

from .definition import CONTROL, LOWER_IS_BETTER, METRICS, Experiment

RATE_OF: dict[str, str] = {
    "acceptance_rate": "accepted",
    "completion_rate": "completed",
    "engagement_rate": "engaged",
    "dismissal_rate": "dismissed",
}
"""Each rate and the outcome count it divides by the exposed users."""
assert set(RATE_OF) == set(METRICS)


@dataclass(frozen=True)
class Comparison:
    """A variant against control: relative lift, its confidence interval, the test's z and p."""

    lift: float | None
    lift_low: float | None
    lift_high: float | None
    z: float
    p_value: float


def two_proportion_z_test(x_t: int, n_t: int, x_c: int, n_c: int) -> tuple[float, float]:
    """z and two-sided p of the pooled two-proportion z-test of ``x_t / n_t`` against ``x_c / n_c``
    (z = 0, p = 1 when the pooled rate is 0 or 1: nothing to tell apart)."""
    pooled = (x_t + x_c) / (n_t + n_c)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_t + 1 / n_c))
    if se == 0:
        return 0.0, 1.0
    z = (x_t / n_t - x_c / n_c) / se
    return z, float(2 * norm.sf(abs(z)))


def relative_lift(
    x_t: int, n_t: int, x_c: int, n_c: int, level: float
) -> tuple[float | None, float | None, float | None]:
    """``p_t / p_c - 1`` and its ``level`` confidence interval from the log risk ratio (Katz:
    se = sqrt(1/x_t - 1/n_t + 1/x_c - 1/n_c)); no lift when control has no success, no interval
    when either arm has none."""
    if x_c == 0:
        return None, None, None
    ratio = (x_t / n_t) / (x_c / n_c)
    if x_t == 0:
        return ratio - 1, None, None
    se = math.sqrt(1 / x_t - 1 / n_t + 1 / x_c - 1 / n_c)
    half = float(norm.ppf(0.5 + level / 2)) * se
    return ratio - 1, math.exp(math.log(ratio) - half) - 1, math.exp(math.log(ratio) + half) - 1


def compare(x_t: int, n_t: int, x_c: int, n_c: int, alpha: float) -> Comparison:
    """The variant's :class:`Comparison` with control at level ``alpha`` (interval: ``1 - alpha``)."""
    z, p = two_proportion_z_test(x_t, n_t, x_c, n_c)
    return Comparison(*relative_lift(x_t, n_t, x_c, n_c, 1 - alpha), z=z, p_value=p)


def verdict(comparison: Comparison, n_t: int, n_c: int, experiment: Experiment, alpha: float) -> str:
    """The rule of this module's docstring, for one variant (``alpha`` already corrected)."""
    if min(n_t, n_c) < experiment.min_sample_size or comparison.lift is None:
        return "keep_testing"
    improvement = -comparison.lift if experiment.success_metric in LOWER_IS_BETTER else comparison.lift
    if comparison.p_value < alpha and improvement >= experiment.min_lift:
        return "roll_out"
    if comparison.p_value < alpha and improvement < 0:
        return "stop"
    return "keep_testing"


def analyse(experiment: Experiment, counts: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """One row per variant of ``experiment`` from ``counts`` (variant, users and the outcome counts of
    :data:`RATE_OF`; variants without exposed users count zero): sample size, the four rates, and
    against control on the success metric the lift, its interval, the p-value and the verdict
    (``control`` for control itself)."""
    by_variant = counts.set_index("variant")
    corrected = alpha / max(1, len(experiment.variants) - 1)
    success = RATE_OF[experiment.success_metric]

    def count(variant: str, column: str) -> int:
        return int(by_variant[column].get(variant, 0)) if variant in by_variant.index else 0

    n_c, x_c = count(CONTROL, "users"), count(CONTROL, success)
    rows = []
    for variant in experiment.variants:
        n = count(variant.name, "users")
        rates = {rate: (count(variant.name, outcome) / n if n else None) for rate, outcome in RATE_OF.items()}
        row = {"variant": variant.name, "ranking": variant.ranking, "sample_size": n, **rates}
        row["metric"] = experiment.success_metric
        if variant.name == CONTROL or n == 0 or n_c == 0:
            comparison = Comparison(None, None, None, 0.0, 1.0)
            row["verdict"] = "control" if variant.name == CONTROL else "keep_testing"
        else:
            comparison = compare(count(variant.name, success), n, x_c, n_c, corrected)
            row["verdict"] = verdict(comparison, n, n_c, experiment, corrected)
        row |= {key: value for key, value in asdict(comparison).items() if key != "z"}
        if variant.name == CONTROL:
            row["p_value"] = None
        rows.append(row)
    return pd.DataFrame(rows)


def winner(results: pd.DataFrame) -> str | None:
    """The variant to roll out: of those whose verdict is ``roll_out``, the largest lift (lower-is-better
    metrics: the largest drop); ``None`` when there is none."""
    out = results[results["verdict"] == "roll_out"]
    if out.empty:
        return None
    sign = -1 if out["metric"].iloc[0] in LOWER_IS_BETTER else 1
    return str(out.loc[(sign * out["lift"]).idxmax(), "variant"])
