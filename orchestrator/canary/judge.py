"""The canary judge: pure functions over samples, exactly as SPEC section 2 "Canary analysis".

Entry points (nothing here reads a clock, a file or the network):

    judge_metric(canary, control, *, name="", confidence=0.95, allowed_change_pct=0.0,
                 min_samples=10, fail_on="either", critical=False) -> MetricJudgement
    score(judgements, *, nodata="fail", pass_score=90.0, marginal=75.0,
          wave=None) -> AnalysisResult
    analyse(spec, canary, control, wave=None, workers=None) -> AnalysisResult
        # spec: orchestrator.canary.spec.AnalysisSpec; canary/control: metric name ->
        # samples (pooled over the side's hosts, None/NaN = no data)
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

Score: 100 x passed / judged. `nodata: fail` counts a nodata metric as judged and failed;
`ignore` leaves it out. A failed `critical` metric (with `nodata: fail`, a critical
metric without data is failed too) makes the score 0, and so does nodata on half of the
metrics or more, whatever `nodata` says. result: pass when score >= pass, marginal when
>= marginal, else fail.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import numpy as np

    from orchestrator.canary.spec import AnalysisSpec

HIGH, LOW, PASS, NODATA = "high", "low", "pass", "nodata"
FailOn = Literal["increase", "decrease", "either"]
FAIL_ON = ("increase", "decrease", "either")
_FAILING: dict[str, frozenset[str]] = {
    "increase": frozenset({HIGH}),
    "decrease": frozenset({LOW}),
    "either": frozenset({HIGH, LOW}),
}
IQR_FENCE = 3.0

#: per side: a list of readings (None = no data) or a numpy array
Samples = Iterable[float | None]


@dataclass(frozen=True)
class MetricJudgement:
    name: str
    cls: str  # high | low | pass | nodata
    canary_mean: float | None
    control_mean: float | None
    effect: float | None  # canary mean / control mean; inf when the control mean is 0
    p_value: float | None
    canary_samples: int  # after dropping no-data samples and outliers
    control_samples: int
    fail_on: str = "either"
    critical: bool = False

    @property
    def nodata(self) -> bool:
        return self.cls == NODATA

    @property
    def failed(self) -> bool:
        """High/low in the direction `fail_on` watches (nodata is the score's business)."""
        return self.cls in _FAILING[self.fail_on]

    def detail(self) -> dict[str, Any]:
        return {"name": self.name, "class": self.cls,
                "canary_mean": _json_float(self.canary_mean),
                "control_mean": _json_float(self.control_mean),
                "effect": _json_float(self.effect),
                "p_value": _json_float(self.p_value),
                "canary_samples": self.canary_samples,
                "control_samples": self.control_samples}


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
        return [m.name for m in self.metrics if m.failed]


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


def judge_metric(canary: Samples, control: Samples, *, name: str = "",
                 confidence: float = 0.95, allowed_change_pct: float = 0.0,
                 min_samples: int = 10, fail_on: str = "either",
                 critical: bool = False) -> MetricJudgement:
    """Judge one metric: canary samples against control samples (see the module doc)."""
    if fail_on not in _FAILING:
        raise ValueError(f"fail_on must be one of {', '.join(FAIL_ON)}, not {fail_on!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, not {confidence!r}")
    can = without_outliers(clean(canary))
    ctl = without_outliers(clean(control))
    can_mean = float(can.mean()) if can.size else None
    ctl_mean = float(ctl.mean()) if ctl.size else None
    base = dict(name=name, canary_mean=can_mean, control_mean=ctl_mean,
                canary_samples=int(can.size), control_samples=int(ctl.size),
                fail_on=fail_on, critical=critical)
    if can.size < max(1, min_samples) or ctl.size < max(1, min_samples):
        return MetricJudgement(cls=NODATA, effect=_ratio(can_mean, ctl_mean), p_value=None,
                               **base)  # type: ignore[arg-type]
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
    return MetricJudgement(cls=cls, effect=effect, p_value=p, **base)  # type: ignore[arg-type]


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
    """Score and verdict over the judged metrics (see the module doc)."""
    if nodata not in ("fail", "ignore"):
        raise ValueError(f"nodata must be fail or ignore, not {nodata!r}")
    metrics = tuple(judgements)
    missing = [m for m in metrics if m.nodata]
    judged = [m for m in metrics if not (m.nodata and nodata == "ignore")]
    passed = [m for m in judged if not m.nodata and not m.failed]
    value = 100.0 * len(passed) / len(judged) if judged else 0.0
    why: str | None = None
    critical = [m.name for m in metrics
                if m.critical and (m.failed or (m.nodata and nodata == "fail"))]
    if critical:
        why = f"critical metric {', '.join(critical)} failed"
    elif metrics and 2 * len(missing) >= len(metrics):
        why = f"no data on {len(missing)} of {len(metrics)} metrics"
    elif not judged:
        why = "no metric judged"
    if why is not None:
        value = 0.0
    value = round(value, 2)
    result = "pass" if value >= pass_score else "marginal" if value >= marginal else "fail"
    return AnalysisResult(value, result, metrics, wave, why)


def analyse(spec: AnalysisSpec, canary: Mapping[str, Samples], control: Mapping[str, Samples],
            wave: int | None = None, workers: int | None = None) -> AnalysisResult:
    """Judge every metric of `spec` (a metric absent from a side has no samples there).

    Metrics are judged on up to `workers` threads (default: the CPUs, at most 8): the
    time goes into numpy's sorts inside Mann-Whitney U, which release the GIL."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    def one(m: Any) -> MetricJudgement:
        return judge_metric(canary.get(m.name, ()), control.get(m.name, ()), name=m.name,
                            confidence=spec.confidence,
                            allowed_change_pct=m.allowed_change_pct,
                            min_samples=spec.min_samples, fail_on=m.fail_on,
                            critical=m.critical)

    n = workers if workers is not None else min(8, os.cpu_count() or 1)
    if n <= 1 or len(spec.metrics) <= 1:
        judgements = [one(m) for m in spec.metrics]
    else:
        with ThreadPoolExecutor(max_workers=min(n, len(spec.metrics))) as pool:
            judgements = list(pool.map(one, spec.metrics))
    return score(judgements, nodata=spec.nodata, pass_score=spec.pass_score,
                 marginal=spec.marginal, wave=wave)
