"""A phase file's `analysis:` block read into `core.model.AnalysisSpec`, with one
FILE:LINE problem per mistake (SPEC section 2, "Canary analysis").

    parse_analysis(block, *, file, line, metric_kinds, bake=0.0, has_waves=False,
                   host_names=None) -> tuple[AnalysisSpec | None, list[Problem]]
        block:        the YDict under `analysis:` (as yamlsource.load_yaml gives it)
        file, line:   the phase file as problems name it, and the line of `analysis:`
        metric_kinds: metric name -> MetricKind (or "number" / "pass/fail"), from
                      migration.yaml; a judged pass/fail metric is refused
        bake:         the phase's bake in seconds (the window must fit in it)
        has_waves:    whether the phase has `waves:` (not-migrated needs them)
        host_names:   inventory hosts and groups, to check a control list (None: unchecked)
    The spec is None when there is any problem; an unknown metric is not also "pass/fail".

Per metric: `fail_on` (increase | decrease | either), `allowed_change_pct` (>= 0),
`critical` and `dry_run` (true/false), `spread: {allowed_change_pct: N}` (N >= 0,
default 0: the canary's interquartile range may be at most 1 + N/100 times the
control's), `description`. The defaults are in core/model.py beside the values.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from orchestrator._exceptions import Problem
from orchestrator.config.yamlsource import YDict, YList
from orchestrator.core.durations import format_duration, parse_duration
from orchestrator.core.model import (
    BEFORE,
    FAIL_ON,
    HOSTS,
    NOT_MIGRATED,
    AnalysisMetric,
    AnalysisSpec,
)

ANALYSIS_KEYS = frozenset({"metrics", "control", "window", "confidence", "min_samples",
                           "nodata", "pass", "marginal", "dry_run", "description"})
METRIC_KEYS = frozenset({"fail_on", "allowed_change_pct", "critical", "dry_run", "spread",
                         "description"})
SPREAD_KEYS = frozenset({"allowed_change_pct"})


def _closest(word: str, options: Collection[str]) -> str | None:
    match = difflib.get_close_matches(word, sorted(options), n=1, cutoff=0.6)
    return match[0] if match else None


def _hint(word: str, options: Collection[str]) -> str:
    hint = _closest(word, options)
    return f" (did you mean {hint!r}?)" if hint else ""


class _Parse:
    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []

    def add(self, line: int, message: str) -> None:
        self.problems.append(Problem(self.file, line, message))

    def unknown_keys(self, d: YDict, allowed: Collection[str], what: str) -> None:
        for key, kline in d.duplicate_keys:
            self.add(kline, f"duplicate key {key!r} in {what}")
        for key in d:
            if key not in allowed:
                self.add(d.line_of(key), f"unknown key {key!r} in {what}"
                         + _hint(key, allowed))

    def number(self, d: YDict, key: str, default: float, what: str, lo: float, hi: float,
               lo_open: bool = False, hi_open: bool = False) -> float | None:
        if key not in d:
            return default
        value = d[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.add(d.line_of(key), f"{key} in {what} must be a number, not {value!r}")
            return None
        ok = (lo < value if lo_open else lo <= value) and (value < hi if hi_open else value <= hi)
        if not ok:
            left, right = "(" if lo_open else "[", ")" if hi_open else "]"
            self.add(d.line_of(key), f"{key} in {what} must be in {left}{lo:g}, {hi:g}{right}, "
                     f"not {value!r}")
            return None
        return float(value)

    def boolean(self, d: YDict, key: str, what: str) -> bool | None:
        value = d.get(key, False)
        if not isinstance(value, bool):
            self.add(d.line_of(key), f"{key} in {what} must be true or false, not {value!r}")
            return None
        return value

    def choice(self, d: YDict, key: str, default: str, options: Sequence[str],
               what: str) -> str | None:
        value = d.get(key, default)
        if value not in options:
            self.add(d.line_of(key), f"{key} in {what} must be one of {', '.join(options)}, "
                     f"not {value!r}" + (_hint(value, options) if isinstance(value, str) else ""))
            return None
        return str(value)


def _kind_name(kind: Any) -> str:
    return str(getattr(kind, "value", kind))


def parse_analysis(block: Any, *, file: str, line: int, metric_kinds: Mapping[str, Any],
                   bake: float = 0.0, has_waves: bool = False,
                   host_names: Collection[str] | None = None,
                   ) -> tuple[AnalysisSpec | None, list[Problem]]:
    """Read an `analysis:` block (see the module doc); (spec or None, problems)."""
    p = _Parse(file)
    if not isinstance(block, YDict):
        p.add(line, "analysis must be a mapping with at least `metrics:`")
        return None, sorted(p.problems)
    where = "analysis"
    p.unknown_keys(block, ANALYSIS_KEYS, where)
    metrics = _metrics(p, block, line, metric_kinds)
    control, control_hosts = _control(p, block, has_waves, host_names)

    window: float | None = None
    if "window" in block:
        try:
            window = parse_duration(block["window"])
        except ValueError as exc:
            p.add(block.line_of("window"), f"window: {exc}")
        else:
            if window <= 0:
                p.add(block.line_of("window"), "window must be longer than 0s")
                window = None
            elif window > bake:
                p.add(block.line_of("window"),
                      f"window {format_duration(window)} is longer than the phase's bake "
                      f"({format_duration(bake)}): the judgement reads the last `window` of "
                      "the bake, so the bake must be at least the window")
                window = None
    elif bake <= 0:
        p.add(line, "analysis needs a bake: the canary is sampled during the last `window` "
                    "of the bake, and this phase has none (set bake: and window:)")
    else:
        window = bake

    confidence = p.number(block, "confidence", 0.95, where, 0, 1, lo_open=True, hi_open=True)
    min_samples: int | None = 10
    if "min_samples" in block:
        raw = block["min_samples"]
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
            p.add(block.line_of("min_samples"),
                  f"min_samples in analysis must be a whole number of at least 1, not {raw!r}")
            min_samples = None
        else:
            min_samples = raw
    nodata = p.choice(block, "nodata", "fail", ("fail", "ignore"), where)
    pass_score = p.number(block, "pass", 90.0, where, 0, 100)
    marginal = p.number(block, "marginal", 75.0, where, 0, 100)
    if pass_score is not None and marginal is not None:
        if "marginal" in block and marginal > pass_score:
            p.add(block.line_of("marginal"),
                  f"thresholds out of order: marginal {marginal:g} is above pass "
                  f"{pass_score:g} (a score >= pass goes on, >= marginal pauses, below "
                  "rolls back)")
        elif "marginal" not in block:
            marginal = min(marginal, pass_score)
    dry_run = p.boolean(block, "dry_run", where)

    if p.problems:
        return None, sorted(p.problems)
    assert metrics is not None and control is not None and window is not None
    assert confidence is not None and min_samples is not None and nodata is not None
    assert pass_score is not None and marginal is not None and dry_run is not None
    return AnalysisSpec(metrics=metrics, control=control, control_hosts=control_hosts,
                        window=window, confidence=confidence, min_samples=min_samples,
                        nodata=nodata, pass_score=pass_score, marginal=marginal,
                        dry_run=dry_run, line=line), []


def _metrics(p: _Parse, block: YDict, line: int,
             metric_kinds: Mapping[str, Any]) -> tuple[AnalysisMetric, ...] | None:
    raw = block.get("metrics")
    mline = block.line_of("metrics")
    if raw is None:
        p.add(line if "metrics" not in block else mline,
              "analysis needs `metrics:`, the metrics to judge (a mapping of metric names)")
        return None
    entries: list[tuple[str, Any, int]] = []
    if isinstance(raw, YDict):
        for key, kline in raw.duplicate_keys:
            p.add(kline, f"duplicate metric {key!r} in analysis")
        entries = [(str(k), v, raw.line_of(k)) for k, v in raw.items()]
    elif isinstance(raw, YList):  # [vram_used_mib, latency]: every option defaulted
        entries = [(str(v), None, raw.line_of(i)) for i, v in enumerate(raw)]
    else:
        p.add(mline, "metrics in analysis must be a mapping of metric names "
                     "(name: {fail_on: increase, ...})")
        return None
    if not entries:
        p.add(mline, "metrics in analysis is empty: name at least one metric to judge")
        return None
    out: list[AnalysisMetric] = []
    ok = True
    for name, opts, nline in entries:
        if name not in metric_kinds:
            p.add(nline, f"analysis metric {name!r} is not a metric of migration.yaml"
                  + _hint(name, metric_kinds))
            ok = False
            continue
        if _kind_name(metric_kinds[name]) != "number":
            p.add(nline, f"analysis metric {name!r} is pass/fail: only numeric metrics can be "
                         "judged against a control (use it as a trigger or precondition)")
            ok = False
            continue
        if opts is None:
            out.append(AnalysisMetric(name, line=nline))
            continue
        if not isinstance(opts, YDict):
            p.add(nline, f"analysis metric {name!r} must map to its options "
                         "({fail_on: increase, allowed_change_pct: 10, critical: true})")
            ok = False
            continue
        what = f"analysis metric {name!r}"
        before = len(p.problems)
        p.unknown_keys(opts, METRIC_KEYS, what)
        fail_on = p.choice(opts, "fail_on", "either", FAIL_ON, what)
        allowed = p.number(opts, "allowed_change_pct", 0.0, what, 0, float("inf"))
        critical = p.boolean(opts, "critical", what)
        dry_run = p.boolean(opts, "dry_run", what)
        spread = _spread(p, opts, what)
        if len(p.problems) != before or fail_on is None or allowed is None or critical is None \
                or dry_run is None:
            ok = False
            continue
        out.append(AnalysisMetric(name, fail_on, allowed, critical, nline, dry_run=dry_run,
                                  spread_allowed_pct=spread))
    return tuple(out) if ok else None


def _control(p: _Parse, block: YDict, has_waves: bool,
             host_names: Collection[str] | None) -> tuple[str | None, tuple[str, ...]]:
    default = NOT_MIGRATED if has_waves else BEFORE
    raw = block.get("control", default)
    cline = block.line_of("control")
    if isinstance(raw, str):
        if raw == NOT_MIGRATED:
            if not has_waves:
                p.add(cline, "control: not-migrated needs waves: on a phase without waves "
                             "every host is migrated at once and none is left to compare "
                             "with (use control: before, or a list of control hosts)")
                return None, ()
            return NOT_MIGRATED, ()
        if raw == BEFORE:
            return BEFORE, ()
        if host_names is not None and raw in host_names:
            return HOSTS, (raw,)
        options = [NOT_MIGRATED, BEFORE, *(host_names or ())]
        p.add(cline, f"control must be not-migrated, before or a list of hosts/groups, not "
                     f"{raw!r}" + _hint(raw, options))
        return None, ()
    if isinstance(raw, YList):
        names: list[str] = []
        ok = True
        for i, item in enumerate(raw):
            iline = raw.line_of(i)
            if not isinstance(item, str) or not item.strip():
                p.add(iline, f"control hosts must be host or group names, not {item!r}")
                ok = False
            elif host_names is not None and item not in host_names:
                p.add(iline, f"control host {item!r} is not a host or group of the inventory"
                      + _hint(item, host_names))
                ok = False
            else:
                names.append(item)
        if not raw:
            p.add(cline, "control is an empty list: name the control hosts or groups")
            ok = False
        return (HOSTS, tuple(names)) if ok else (None, ())
    p.add(cline, f"control must be not-migrated, before or a list of hosts/groups, "
                 f"not {raw!r}")
    return None, ()


def _spread(p: _Parse, opts: YDict, what: str) -> float | None:
    """`spread: {allowed_change_pct: N}`: N (default 0), or None when not set or wrong
    (a wrong one is a problem)."""
    if "spread" not in opts:
        return None
    raw, sline = opts["spread"], opts.line_of("spread")
    if not isinstance(raw, YDict):
        p.add(sline, f"spread in {what} must be a mapping, {{allowed_change_pct: 50}}: how "
                     f"much wider (in %) the canary's interquartile range may grow, not {raw!r}")
        return None
    where = f"spread of {what}"
    p.unknown_keys(raw, SPREAD_KEYS, where)
    return p.number(raw, "allowed_change_pct", 0.0, where, 0, float("inf"))
