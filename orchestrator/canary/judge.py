"""The canary judge: pure functions over samples, exactly as SPEC section 2 "Canary analysis".

As Kayenta's judge, it takes only arrays and numbers: no spec, no project, nothing of
ours (canary/verdict.py applies a phase's `AnalysisSpec` through it). Entry points
(nothing here reads a clock, a file or the network):

    judge_metric(canary, control, *, name="", confidence=0.95, allowed_change_pct=0.0,
                 min_samples=10, fail_on="either", critical=False, dry_run=False,
                 spread_allowed_pct=None) -> MetricJudgement
    judge_metrics([(canary, control), ...], [MetricRule(name, ...), ...], *,
                  confidence=0.95, min_samples=10, workers=1) -> [MetricJudgement]
    score(judgements, *, nodata="fail", pass_score=90.0, marginal=75.0,
          wave=None) -> AnalysisResult
    AnalysisResult.detail() -> dict     # the journal's `analysis_completed` detail

Per metric:

1. Samples without data (None, NaN, +-inf) are dropped.
2. On each side separately, samples outside [Q1 - 3 IQR, Q3 + 3 IQR] are removed (a
   side whose IQR is 0 keeps only the values equal to its quartiles).
3. A side with fewer than `min_samples` left (and always an empty side): `nodata`.
4. Two-sided Mann-Whitney U, as scipy.stats.mannwhitneyu (asymptotic with continuity
   and tie corrections; scipy's exact test for a side of 8 or fewer without ties): the
   two sides differ when p < 1 - confidence. Identical constant samples (all ties) have
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

How (issue 30: 20 metrics x 120,000 samples in 0.5 s): each side is sorted once; the
quartiles, the outlier fences, the median and the ties are read from the sorted sides,
U from two binary searches of the canary's sorted samples into the control's (instead of
scipy's argsort of both sides), Brown-Forsythe's W with scipy.stats.levene's sums in its
order; then every metric's p-values come from one call each of scipy.special.ndtr and
fdtrc. Only scipy.special is imported (scipy.stats costs three times as long to import)
and only when a metric is judged. tests/core/test_canary_judge_batch.py holds the
judgements equal, to the bit, to scipy.stats.mannwhitneyu and levene metric by metric.

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
    """Samples within [Q1 - fence x IQR, Q3 + fence x IQR], in their order."""
    import numpy as np

    if arr.size < 2:
        return arr
    q1, q3 = np.percentile(arr, [25.0, 75.0])
    iqr = q3 - q1
    return arr[(arr >= q1 - fence * iqr) & (arr <= q3 + fence * iqr)]


@dataclass(frozen=True)
class MetricRule:
    """What one metric is judged by, beside its samples (judge_metric's keyword arguments
    but the spec-wide confidence and min_samples)."""

    name: str = ""
    allowed_change_pct: float = 0.0
    fail_on: str = "either"
    critical: bool = False
    dry_run: bool = False
    spread_allowed_pct: float | None = None


@dataclass
class _Side:
    """One side of one metric after `clean` and `without_outliers`: the samples in their
    order (for the mean and Brown-Forsythe, whose sums then add in scipy's order) and
    sorted once (quartiles, median, ranks and ties all read from it)."""

    kept: np.ndarray
    ordered: np.ndarray

    @classmethod
    def of(cls, samples: Samples) -> _Side:
        import numpy as np

        arr = clean(samples)
        if arr.size < 2:
            return cls(arr, arr)
        ordered = np.sort(arr)
        q1, q3 = np.percentile(ordered, [25.0, 75.0])  # on sorted data: no partition work
        iqr = q3 - q1
        lo, hi = q1 - IQR_FENCE * iqr, q3 + IQR_FENCE * iqr
        start = int(np.searchsorted(ordered, lo, "left"))
        stop = int(np.searchsorted(ordered, hi, "right"))
        if start == 0 and stop == arr.size:
            return cls(arr, ordered)
        return cls(arr[(arr >= lo) & (arr <= hi)], ordered[start:stop])

    @property
    def size(self) -> int:
        return int(self.kept.size)

    def mean(self) -> float | None:
        return float(self.kept.mean()) if self.kept.size else None

    def iqr(self) -> float:
        import numpy as np

        q1, q3 = np.percentile(self.ordered, [25.0, 75.0])
        return float(q3 - q1)

    def median(self) -> float:
        """np.median's value (the mean of the two middle samples when the count is even)."""
        n, mid = self.ordered.size, self.ordered.size // 2
        if n % 2:
            return float(self.ordered[mid])
        return float((self.ordered[mid - 1] + self.ordered[mid]) / 2)

    def has_ties(self) -> bool:
        import numpy as np

        return bool(np.any(self.ordered[1:] == self.ordered[:-1]))


@dataclass
class _Statistics:
    """One metric's test statistics before their p-values: Mann-Whitney's z (or a p-value
    already known) and Brown-Forsythe's W, so that the p-values of every metric come
    from one call each of scipy.special.ndtr and fdtrc."""

    rule: MetricRule
    canary: _Side
    control: _Side
    nodata: bool
    mw_z: float | None = None  # None: mw_p is known (all ties, or scipy's exact test)
    mw_p: float = 1.0
    bf_w: float | None = None  # None: bf_p is known (no spread on either side)
    bf_p: float = 1.0
    bf_dfd: float = 0.0
    iqr_ratio: float | None = None


def _mann_whitney_z(can: _Side, ctl: _Side) -> tuple[float | None, float]:
    """Mann-Whitney U's standardized statistic (two-sided, continuity-corrected, tie-
    corrected), computed as scipy.stats.mannwhitneyu computes it but from the sides
    sorted once instead of an argsort of both: U1 counts, for every canary sample, the
    control samples below it and half those equal to it (exactly R1 - n1(n1+1)/2, both
    being sums of half-integers). (None, p) where the p-value needs no z: all ties, or
    scipy's exact test (a side of 8 or fewer without ties), which scipy computes."""
    import numpy as np

    a, b = can.ordered, ctl.ordered
    lo, hi = min(a[0], b[0]), max(a[-1], b[-1])
    if lo == hi:  # all ties: nothing tells the sides apart
        return None, 1.0
    below = np.searchsorted(b, a, "left")
    upto = np.searchsorted(b, a, "right")
    n1, n2 = int(a.size), int(b.size)
    left, right = int(below.sum()), int(upto.sum())
    ties = right != left or can.has_ties() or ctl.has_ties()
    if not ties and (n1 <= 8 or n2 <= 8):
        from scipy.stats import mannwhitneyu

        p = float(mannwhitneyu(can.kept, ctl.kept, alternative="two-sided").pvalue)
        return None, 1.0 if np.isnan(p) else p
    u1 = np.float64((left + right) / 2)
    u = max(u1, n1 * n2 - u1)
    n = n1 + n2
    tie_term = np.float64(0.0)
    if ties:  # scipy's layout: a count at the first of each run of equal values, else 0
        merged = np.sort(np.concatenate((a, b)), kind="stable")  # two sorted runs: a merge
        first = np.concatenate(([True], merged[1:] != merged[:-1]))
        starts = np.flatnonzero(first)
        t = np.zeros(n, dtype=np.float64)
        t[starts] = np.diff(starts, append=n)
        tie_term = np.sum(t**3 - t, axis=-1)
    s = np.sqrt(n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1))))
    numerator = u - n1 * n2 / 2
    numerator -= 0.5
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(numerator / s), 1.0


def _brown_forsythe_w(can: _Side, ctl: _Side) -> tuple[float | None, float]:
    """Levene's W about the medians (Brown-Forsythe) for two samples, as scipy.stats.levene
    (center="median") computes it, in the same order of sums; the F p-value comes later,
    with every metric's. (None, 1.0) when neither side has any spread (levene's NaN)."""
    import numpy as np

    if can.ordered[0] == can.ordered[-1] and ctl.ordered[0] == ctl.ordered[-1]:
        return None, 1.0
    samples = (can.kept, ctl.kept)
    nis = [can.size, ctl.size]
    zijs = [np.abs(x - med) for x, med in zip(samples, (can.median(), ctl.median()),
                                                  strict=True)]
    zbaris = [np.mean(z, axis=-1, keepdims=True) for z in zijs]
    ntot = sum(nis)
    zbar = sum(ni * zb for ni, zb in zip(nis, zbaris, strict=True)) / ntot
    numer = (ntot - 2) * sum(ni * (zb - zbar) ** 2 for ni, zb in zip(nis, zbaris, strict=True))
    denom = 1.0 * sum(np.sum((z - zb) ** 2, axis=-1, keepdims=True)
                      for z, zb in zip(zijs, zbaris, strict=True))
    with np.errstate(divide="ignore", invalid="ignore"):
        return float((numer / denom)[0]), 1.0


def _statistics(canary: Samples, control: Samples, rule: MetricRule,
                min_samples: int) -> _Statistics:
    can, ctl = _Side.of(canary), _Side.of(control)
    if can.size < max(1, min_samples) or ctl.size < max(1, min_samples):
        return _Statistics(rule, can, ctl, nodata=True)
    st = _Statistics(rule, can, ctl, nodata=False)
    st.mw_z, st.mw_p = _mann_whitney_z(can, ctl)
    if rule.spread_allowed_pct is not None:
        st.iqr_ratio = _ratio(can.iqr(), ctl.iqr())
        st.bf_w, st.bf_p = _brown_forsythe_w(can, ctl)
        st.bf_dfd = float(can.size + ctl.size - 2)
    return st


def _p_values(stats: Sequence[_Statistics]) -> None:
    """Fill in every metric's p-values at once: 2 x ndtr(-z) for Mann-Whitney (clipped to
    [0, 1], as scipy), fdtrc(1, N - 2, W) for Brown-Forsythe; a NaN p-value reads 1."""
    import numpy as np

    mw = [st for st in stats if st.mw_z is not None]
    bf = [st for st in stats if st.bf_w is not None]
    if not mw and not bf:
        return
    from scipy import special

    if mw:
        z = np.array([st.mw_z for st in mw], dtype=np.float64)
        p = np.clip(special.ndtr(-z) * 2, 0.0, 1.0)
        for st, value in zip(mw, p.tolist(), strict=True):
            st.mw_p = 1.0 if math.isnan(value) else value
    if bf:
        w = np.array([st.bf_w for st in bf], dtype=np.float64)
        dfd = np.array([st.bf_dfd for st in bf], dtype=np.float64)
        p = special.fdtrc(np.float64(1.0), dfd, w)
        for st, value in zip(bf, p.tolist(), strict=True):
            st.bf_p = 1.0 if math.isnan(value) else value


def _judgement(st: _Statistics, confidence: float) -> MetricJudgement:
    rule = st.rule
    can_mean, ctl_mean = st.canary.mean(), st.control.mean()
    base = dict(name=rule.name, canary_mean=can_mean, control_mean=ctl_mean,
                canary_samples=st.canary.size, control_samples=st.control.size,
                fail_on=rule.fail_on, critical=rule.critical, dry_run=rule.dry_run)
    if st.nodata:
        spread = None if rule.spread_allowed_pct is None else SpreadJudgement(None, None, NODATA)
        return MetricJudgement(cls=NODATA, effect=_ratio(can_mean, ctl_mean), p_value=None,
                               spread=spread, **base)  # type: ignore[arg-type]
    assert can_mean is not None and ctl_mean is not None
    p = st.mw_p
    cls = PASS
    if p < 1 - confidence:
        margin = rule.allowed_change_pct / 100 * abs(ctl_mean)
        if can_mean > ctl_mean + margin:
            cls = HIGH
        elif can_mean < ctl_mean - margin:
            cls = LOW
    spread = None
    if rule.spread_allowed_pct is not None:
        ratio = st.iqr_ratio
        assert ratio is not None
        grew = st.bf_p < 1 - confidence and ratio > 1 + rule.spread_allowed_pct / 100
        spread = SpreadJudgement(ratio, st.bf_p, "fail" if grew else "pass")
        if spread.failed and cls not in _FAILING[rule.fail_on]:
            cls = SPREAD  # the middle passed (or moved the way nobody watches): the spread fails
    return MetricJudgement(cls=cls, effect=_ratio(can_mean, ctl_mean), p_value=p,
                           spread=spread, **base)  # type: ignore[arg-type]


def _check(rule: MetricRule, confidence: float) -> None:
    if rule.fail_on not in _FAILING:
        raise ValueError(f"fail_on must be one of {', '.join(_FAILING)}, not {rule.fail_on!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, not {confidence!r}")
    if rule.spread_allowed_pct is not None and not rule.spread_allowed_pct >= 0:
        raise ValueError(
            f"spread allowed_change_pct must be >= 0, not {rule.spread_allowed_pct!r}")


def judge_metrics(samples: Sequence[tuple[Samples, Samples]], rules: Sequence[MetricRule], *,
                  confidence: float = 0.95, min_samples: int = 10,
                  workers: int = 1) -> list[MetricJudgement]:
    """Judge many metrics at once (see the module doc): `samples[i]` is metric i's
    (canary, control), `rules[i]` its rule. Each side is sorted once, on up to `workers`
    threads (numpy's sorts and searches release the GIL); the p-values of all metrics
    then come from one vectorized call each. The same judgements as `judge_metric` on
    each metric, to the bit."""
    if len(samples) != len(rules):
        raise ValueError(f"{len(samples)} sample pairs for {len(rules)} rules")
    for rule in rules:
        _check(rule, confidence)

    def one(i: int) -> _Statistics:
        return _statistics(samples[i][0], samples[i][1], rules[i], min_samples)

    if workers <= 1 or len(rules) <= 1:
        stats = [one(i) for i in range(len(rules))]
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(workers, len(rules))) as pool:
            stats = list(pool.map(one, range(len(rules))))
    _p_values(stats)
    return [_judgement(st, confidence) for st in stats]


def judge_metric(canary: Samples, control: Samples, *, name: str = "",
                 confidence: float = 0.95, allowed_change_pct: float = 0.0,
                 min_samples: int = 10, fail_on: str = "either",
                 critical: bool = False, dry_run: bool = False,
                 spread_allowed_pct: float | None = None) -> MetricJudgement:
    """Judge one metric: canary samples against control samples (see the module doc)."""
    rule = MetricRule(name, allowed_change_pct, fail_on, critical, dry_run, spread_allowed_pct)
    return judge_metrics([(canary, control)], [rule], confidence=confidence,
                         min_samples=min_samples)[0]


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
