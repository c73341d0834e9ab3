"""The canary judge: pure functions over samples, exactly as SPEC section 2 "Canary analysis".

As Kayenta's judge, it takes only arrays and numbers: no spec, no project, nothing of
ours (canary/verdict.py applies a phase's `AnalysisSpec` through it). Entry points
(nothing here reads a clock, a file or the network):

    judge_metric(canary, control, *, name="", confidence=0.95, allowed_change_pct=0.0,
                 min_samples=10, fail_on="either", critical=False, dry_run=False,
                 spread_allowed_pct=None) -> MetricJudgement
    score(judgements, *, nodata="fail", pass_score=90.0, marginal=75.0,
          wave=None) -> AnalysisResult
    AnalysisResult.detail() -> dict     # the journal's `analysis_completed` detail

Per metric:

1. Samples without data (None, NaN, +-inf) are dropped.
2. On each side separately, samples outside [Q1 - 3 IQR, Q3 + 3 IQR] are removed (a
   side whose IQR is 0 keeps only the values equal to its quartiles).
3. A side with fewer than `min_samples` left (and always an empty side): `nodata`.
4. Two-sided Mann-Whitney U (scipy.stats.mannwhitneyu, imported on first use): the two
   sides differ when p < 1 - confidence. Identical constant samples (all ties) have
   p = 1 by definition here, whatever scipy's asymptotic variance makes of them.
5. effect = canary mean / control mean (None in the detail when the control mean is 0
   and the canary's is not: an infinite ratio is not JSON). The class is `high` when the
   sides differ and canary mean > control mean + allowed% x |control mean| (with a
   positive control mean: effect > 1 + allowed/100), `low` symmetrically, else `pass`.
   Writing the test on the difference keeps a zero or negative control mean meaningful.
6. `fail_on`: increase fails on high, decrease on low, either on both.
7. With `spread_allowed_pct` (`spread: {allowed_change_pct}`): a Brown-Forsythe test
   (scipy.stats.levene, center="median") at the same confidence, and the ratio of the
   interquartile ranges canary / control. The spread fails when the test says the
   sides' spreads differ (p < 1 - confidence) and the ratio exceeds 1 + allowed/100: a
   canary that became jittery while its middle stayed put, which Mann-Whitney passes.
   The metric's class is then `spread` (unless its middle already failed it: high/low).
   A spread that narrowed never fails. A control IQR of 0 gives an infinite ratio when
   the canary's is not 0 (None in the detail).
8. `dry_run`: the metric is judged and reported (its class, `failed`), never counted.

Score: 100 x passed / judged, over the metrics that are not dry-run. `nodata: fail`
counts a nodata metric as judged and failed; `ignore` leaves it out. A failed `critical`
metric (with `nodata: fail`, a critical metric without data is failed too) makes the
score 0, and so does nodata on half of the counted metrics or more, whatever `nodata`
says. result: pass when score >= pass, marginal when >= marginal, else fail.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import numpy as np

HIGH, LOW, PASS, NODATA, SPREAD = "high", "low", "pass", "nodata", "spread"
FailOn = Literal["increase", "decrease", "either"]
_FAILING: dict[str, frozenset[str]] = {
    "increase": frozenset({HIGH}),
    "decrease": frozenset({LOW}),
    "either": frozenset({HIGH, LOW}),
}
IQR_FENCE = 3.0

#: per side: a list of readings (None = no data) or a numpy array
Samples = Iterable[float | None]


@dataclass(frozen=True)
class SpreadJudgement:
    """The spread check of one metric (`spread:` set): canary IQR / control IQR, the
    Brown-Forsythe p-value, and pass | fail | nodata."""

    ratio: float | None  # inf when only the control's IQR is 0
    p_value: float | None
    result: str  # pass | fail | nodata

    @property
    def failed(self) -> bool:
        return self.result == "fail"

    def detail(self) -> dict[str, Any]:
        return {"ratio": _json_float(self.ratio), "p_value": _json_float(self.p_value),
                "result": self.result}


@dataclass(frozen=True)
class MetricJudgement:
    name: str
    cls: str  # high | low | spread | pass | nodata
    canary_mean: float | None
    control_mean: float | None
    effect: float | None  # canary mean / control mean; inf when the control mean is 0
    p_value: float | None
    canary_samples: int  # after dropping no-data samples and outliers
    control_samples: int
    fail_on: str = "either"
    critical: bool = False
    dry_run: bool = False  # reported, never counted in the score
    spread: SpreadJudgement | None = None  # when `spread:` is set on the metric

    @property
    def nodata(self) -> bool:
        return self.cls == NODATA

    @property
    def failed(self) -> bool:
        """High/low in the direction `fail_on` watches, or a spread that grew (nodata is
        the score's business). A dry-run metric fails here too: it is reported failed."""
        return self.cls in _FAILING[self.fail_on] or self.cls == SPREAD

    @property
    def counted(self) -> bool:
        """Does this metric count in the score (every metric but a dry-run one)?"""
        return not self.dry_run

    def detail(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name, "class": self.cls,
            "canary_mean": _json_float(self.canary_mean),
            "control_mean": _json_float(self.control_mean),
            "effect": _json_float(self.effect), "p_value": _json_float(self.p_value),
            "canary_samples": self.canary_samples, "control_samples": self.control_samples,
            "dry_run": self.dry_run}
        if self.spread is not None:
            out["spread"] = self.spread.detail()
        return out


@dataclass(frozen=True)
class AnalysisResult:
    score: float
    result: str  # pass | marginal | fail
    metrics: tuple[MetricJudgement, ...] = field(default_factory=tuple)
    wave: int | None = None
    why_zero: str | None = None  # "critical metric X failed", "nodata on 2 of 3 metrics"

    def detail(self) -> dict[str, Any]:
        """The JSON detail of the journal's `analysis_completed` event (SPEC section 2)."""
        return {"wave": self.wave, "score": self.score, "result": self.result,
                "metrics": [m.detail() for m in self.metrics]}

    @property
    def failed_metrics(self) -> list[str]:
        """The failed metrics that counted in the score (a dry-run one never does)."""
        return [m.name for m in self.metrics if m.failed and m.counted]

    @property
    def dry_run_failed(self) -> list[str]:
        """Dry-run metrics that would have failed: reported, not acted on."""
        return [m.name for m in self.metrics if m.failed and not m.counted]


def _json_float(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def clean(samples: Samples) -> np.ndarray:
    """Drop samples without data (None, NaN, inf); a float64 array of what is left."""
    import numpy as np

    if isinstance(samples, np.ndarray):
        arr = samples.astype(np.float64, copy=False).ravel()
    else:
        if not isinstance(samples, list | tuple):
            samples = list(samples)
        arr = np.array(samples, dtype=np.float64).ravel()  # None becomes NaN
    return arr[np.isfinite(arr)]


def without_outliers(arr: np.ndarray, fence: float = IQR_FENCE) -> np.ndarray:
    """Samples within [Q1 - fence x IQR, Q3 + fence x IQR]."""
    import numpy as np

    if arr.size < 2:
        return arr
    q1, q3 = np.percentile(arr, [25.0, 75.0])
    iqr = q3 - q1
    return arr[(arr >= q1 - fence * iqr) & (arr <= q3 + fence * iqr)]


def _p_value(canary: np.ndarray, control: np.ndarray) -> float:
    import numpy as np

    lo = min(canary.min(), control.min())
    hi = max(canary.max(), control.max())
    if lo == hi:  # all ties: nothing tells the sides apart
        return 1.0
    from scipy.stats import mannwhitneyu

    p = float(mannwhitneyu(canary, control, alternative="two-sided").pvalue)
    return 1.0 if np.isnan(p) else p


def judge_spread(canary: np.ndarray, control: np.ndarray, *, confidence: float,
                 allowed_pct: float) -> SpreadJudgement:
    """Did the canary's spread grow past 1 + allowed_pct/100 times the control's, with
    Brown-Forsythe (Levene's test about the medians) saying the spreads differ?"""
    import numpy as np

    q1c, q3c = np.percentile(canary, [25.0, 75.0])
    q1k, q3k = np.percentile(control, [25.0, 75.0])
    ratio = _ratio(float(q3c - q1c), float(q3k - q1k))
    assert ratio is not None
    if canary.min() == canary.max() and control.min() == control.max():
        p = 1.0  # no spread on either side: nothing to compare (levene gives NaN)
    else:
        from scipy.stats import levene

        p = float(levene(canary, control, center="median").pvalue)
        p = 1.0 if np.isnan(p) else p
    grew = p < 1 - confidence and ratio > 1 + allowed_pct / 100
    return SpreadJudgement(ratio, p, "fail" if grew else "pass")


def judge_metric(canary: Samples, control: Samples, *, name: str = "",
                 confidence: float = 0.95, allowed_change_pct: float = 0.0,
                 min_samples: int = 10, fail_on: str = "either",
                 critical: bool = False, dry_run: bool = False,
                 spread_allowed_pct: float | None = None) -> MetricJudgement:
    """Judge one metric: canary samples against control samples (see the module doc)."""
    if fail_on not in _FAILING:
        raise ValueError(f"fail_on must be one of {', '.join(_FAILING)}, not {fail_on!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, not {confidence!r}")
    if spread_allowed_pct is not None and not spread_allowed_pct >= 0:
        raise ValueError(f"spread allowed_change_pct must be >= 0, not {spread_allowed_pct!r}")
    can = without_outliers(clean(canary))
    ctl = without_outliers(clean(control))
    can_mean = float(can.mean()) if can.size else None
    ctl_mean = float(ctl.mean()) if ctl.size else None
    base = dict(name=name, canary_mean=can_mean, control_mean=ctl_mean,
                canary_samples=int(can.size), control_samples=int(ctl.size),
                fail_on=fail_on, critical=critical, dry_run=dry_run)
    if can.size < max(1, min_samples) or ctl.size < max(1, min_samples):
        spread = None if spread_allowed_pct is None else SpreadJudgement(None, None, NODATA)
        return MetricJudgement(cls=NODATA, effect=_ratio(can_mean, ctl_mean), p_value=None,
                               spread=spread, **base)  # type: ignore[arg-type]
    assert can_mean is not None and ctl_mean is not None
    p = _p_value(can, ctl)
    effect = _ratio(can_mean, ctl_mean)
    cls = PASS
    if p < 1 - confidence:
        margin = allowed_change_pct / 100 * abs(ctl_mean)
        if can_mean > ctl_mean + margin:
            cls = HIGH
        elif can_mean < ctl_mean - margin:
            cls = LOW
    spread = None
    if spread_allowed_pct is not None:
        spread = judge_spread(can, ctl, confidence=confidence, allowed_pct=spread_allowed_pct)
        if spread.failed and cls not in _FAILING[fail_on]:
            cls = SPREAD  # the middle passed (or moved the way nobody watches): the spread fails
    return MetricJudgement(cls=cls, effect=effect, p_value=p, spread=spread,
                           **base)  # type: ignore[arg-type]


def _ratio(canary_mean: float | None, control_mean: float | None) -> float | None:
    if canary_mean is None or control_mean is None:
        return None
    if control_mean == 0:
        if canary_mean == 0:
            return 1.0
        return math.copysign(math.inf, canary_mean)
    return canary_mean / control_mean


def score(judgements: Sequence[MetricJudgement], *, nodata: str = "fail",
          pass_score: float = 90.0, marginal: float = 75.0,
          wave: int | None = None) -> AnalysisResult:
    """Score and verdict over the judged metrics (see the module doc); dry-run metrics
    are kept in the result, for the report, and left out of everything counted."""
    if nodata not in ("fail", "ignore"):
        raise ValueError(f"nodata must be fail or ignore, not {nodata!r}")
    metrics = tuple(judgements)
    counted = [m for m in metrics if m.counted]
    missing = [m for m in counted if m.nodata]
    judged = [m for m in counted if not (m.nodata and nodata == "ignore")]
    passed = [m for m in judged if not m.nodata and not m.failed]
    value = 100.0 * len(passed) / len(judged) if judged else 0.0
    why: str | None = None
    critical = [m.name for m in counted
                if m.critical and (m.failed or (m.nodata and nodata == "fail"))]
    if critical:
        why = f"critical metric {', '.join(critical)} failed"
    elif counted and 2 * len(missing) >= len(counted):
        why = f"no data on {len(missing)} of {len(counted)} metrics"
    elif not judged:
        why = "no metric judged"
    if why is not None:
        value = 0.0
    value = round(value, 2)
    result = "pass" if value >= pass_score else "marginal" if value >= marginal else "fail"
    return AnalysisResult(value, result, metrics, wave, why)
