"""The `analysis:` block of a phase file: parsed values and FILE:LINE problems."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator._exceptions import Problem
from orchestrator.config.analysis import parse_analysis
from orchestrator.config.yamlsource import load_yaml
from orchestrator.core.model import (
    BEFORE,
    HOSTS,
    NOT_MIGRATED,
    AnalysisSpec,
    MetricKind,
    control_problem,
    judged_waves,
)

KINDS = {"vram_used_mib": MetricKind.NUMBER, "request_latency_ms": MetricKind.NUMBER,
         "requests_served": MetricKind.NUMBER, "agent_health": MetricKind.PASSFAIL}


def parse(tmp_path: Path, text: str, bake: float = 900, waves: bool = True,
          hosts: set[str] | None = None) -> tuple[AnalysisSpec | None, list[Problem]]:
    f = tmp_path / "2-canary.yaml"
    f.write_text("phase: 2\nname: canary\nbake: 15m\n" + text)
    doc: Any = load_yaml(f)
    return parse_analysis(doc.get("analysis"), file="phases/2-canary.yaml",
                          line=doc.line_of("analysis"), metric_kinds=KINDS, bake=bake,
                          has_waves=waves, host_names=hosts)


def messages(problems: list[Problem]) -> list[str]:
    return [str(p) for p in problems]


def test_the_spec_example_parses(tmp_path: Path) -> None:
    spec, problems = parse(tmp_path, """\
analysis:
  metrics:
    vram_used_mib: {fail_on: increase, allowed_change_pct: 10, critical: true}
    request_latency_ms: {fail_on: increase}
    requests_served: {fail_on: decrease}
  control: not-migrated
  window: 10m
  confidence: 0.95
  min_samples: 10
  nodata: fail
  pass: 90
  marginal: 75
  dry_run: false
""")
    assert problems == [] and spec is not None
    assert spec.window == 600 and spec.control == NOT_MIGRATED and spec.line == 4
    vram = spec.metrics[0]
    assert (vram.name, vram.fail_on, vram.allowed_change_pct, vram.critical) == \
        ("vram_used_mib", "increase", 10.0, True)
    assert spec.metrics[2].fail_on == "decrease"
    assert (spec.pass_score, spec.marginal, spec.nodata, spec.dry_run) == (90, 75, "fail", False)
    assert spec.scaled(0.1).window == 60


def test_defaults_follow_waves(tmp_path: Path) -> None:
    spec, _ = parse(tmp_path, "analysis:\n  metrics: {vram_used_mib: }\n", waves=True)
    assert spec is not None and spec.control == NOT_MIGRATED and spec.window == 900
    assert spec.metrics[0].fail_on == "either" and spec.min_samples == 10
    spec, _ = parse(tmp_path, "analysis:\n  metrics: [vram_used_mib]\n", waves=False)
    assert spec is not None and spec.control == BEFORE


def test_control_hosts(tmp_path: Path) -> None:
    spec, problems = parse(tmp_path, "analysis:\n  metrics: [vram_used_mib]\n"
                           "  control: [pc2, gpu_spare]\n", hosts={"main", "pc2", "gpu_spare"})
    assert problems == [] and spec is not None
    assert spec.control == HOSTS and spec.control_hosts == ("pc2", "gpu_spare")
    _, problems = parse(tmp_path, "analysis:\n  metrics: [vram_used_mib]\n"
                        "  control: [pc3]\n", hosts={"main", "pc2"})
    assert messages(problems) == ["phases/2-canary.yaml:6: control host 'pc3' is not a host "
                                  "or group of the inventory (did you mean 'pc2'?)"]


def test_unknown_keys_get_did_you_mean(tmp_path: Path) -> None:
    _, problems = parse(tmp_path, """\
analysis:
  metrics:
    vram_used_mib: {fail_on: increase, alowed_change_pct: 10}
  confidance: 0.9
""")
    assert messages(problems) == [
        "phases/2-canary.yaml:6: unknown key 'alowed_change_pct' in analysis metric "
        "'vram_used_mib' (did you mean 'allowed_change_pct'?)",
        "phases/2-canary.yaml:7: unknown key 'confidance' in analysis (did you mean "
        "'confidence'?)"]


def test_thresholds_out_of_order(tmp_path: Path) -> None:
    _, problems = parse(tmp_path, "analysis:\n  metrics: [vram_used_mib]\n  pass: 70\n"
                        "  marginal: 80\n")
    assert len(problems) == 1 and problems[0].line == 7
    assert "out of order" in problems[0].message
    spec, problems = parse(tmp_path, "analysis:\n  metrics: [vram_used_mib]\n  pass: 60\n")
    assert problems == [] and spec is not None and spec.marginal == 60


def test_window_longer_than_the_bake(tmp_path: Path) -> None:
    _, problems = parse(tmp_path, "analysis:\n  metrics: [vram_used_mib]\n  window: 20m\n",
                        bake=900)
    assert messages(problems) == [
        "phases/2-canary.yaml:6: window 20m is longer than the phase's bake (15m): the "
        "judgement reads the last `window` of the bake, so the bake must be at least the "
        "window"]
    _, problems = parse(tmp_path, "analysis:\n  metrics: [vram_used_mib]\n", bake=0)
    assert len(problems) == 1 and problems[0].line == 4 and "needs a bake" in problems[0].message


def test_not_migrated_without_waves(tmp_path: Path) -> None:
    _, problems = parse(tmp_path, "analysis:\n  metrics: [vram_used_mib]\n"
                        "  control: not-migrated\n", waves=False)
    assert len(problems) == 1 and problems[0].line == 6
    assert "needs waves" in problems[0].message
    _, problems = parse(tmp_path, "analysis:\n  metrics: [vram_used_mib]\n"
                        "  control: not-migratd\n")
    assert "did you mean 'not-migrated'" in problems[0].message


def test_pass_fail_and_unknown_metrics(tmp_path: Path) -> None:
    _, problems = parse(tmp_path, """\
analysis:
  metrics:
    agent_health: {fail_on: decrease}
    vram_usd_mib: {}
""")
    assert messages(problems) == [
        "phases/2-canary.yaml:6: analysis metric 'agent_health' is pass/fail: only numeric "
        "metrics can be judged against a control (use it as a trigger or precondition)",
        "phases/2-canary.yaml:7: analysis metric 'vram_usd_mib' is not a metric of "
        "migration.yaml (did you mean 'vram_used_mib'?)"]


def test_bad_values_one_problem_each(tmp_path: Path) -> None:
    _, problems = parse(tmp_path, """\
analysis:
  metrics:
    vram_used_mib: {fail_on: up, critical: maybe}
  confidence: 95
  min_samples: 0
  nodata: skip
  window: 5
""")
    lines = sorted(p.line for p in problems)
    assert lines == [6, 6, 7, 8, 9, 10], messages(problems)
    assert any("fail_on" in m and "increase, decrease, either" in m for m in messages(problems))
    assert any("confidence" in m and "(0, 1)" in m for m in messages(problems))
    _, problems = parse(tmp_path, "analysis: [vram_used_mib]\n")
    assert problems[0].line == 4 and "mapping" in problems[0].message
    _, problems = parse(tmp_path, "analysis:\n  window: 1m\n")
    assert messages(problems) == ["phases/2-canary.yaml:4: analysis needs `metrics:`, the "
                                  "metrics to judge (a mapping of metric names)"]


def test_waves_that_leave_no_control_are_refused() -> None:
    spec = AnalysisSpec(metrics=(), control=NOT_MIGRATED)
    assert judged_waves(spec, [1, 10, 100], 100) == [1, 2]
    assert control_problem(spec, [1, 10, 100], 100) is None
    why = control_problem(spec, [100], 100)
    assert why is not None and "no host unmigrated" in why
    assert control_problem(spec, [], 10) is not None
    before = AnalysisSpec(metrics=(), control=BEFORE)
    assert control_problem(before, [100], 100) is None and judged_waves(before, [5, 10], 10) == [1, 2]


def test_per_metric_spread_and_dry_run(tmp_path: Path) -> None:
    spec, problems = parse(tmp_path, """\
analysis:
  metrics:
    vram_used_mib: {fail_on: increase, spread: {allowed_change_pct: 50}}
    request_latency_ms: {dry_run: true, spread: {}}
    requests_served: {fail_on: decrease}
""")
    assert problems == [] and spec is not None
    vram, latency, served = spec.metrics
    assert (vram.spread_allowed_pct, vram.dry_run) == (50.0, False)
    assert (latency.spread_allowed_pct, latency.dry_run) == (0.0, True)
    assert (served.spread_allowed_pct, served.dry_run) == (None, False)


def test_bad_spread_and_dry_run_are_named_with_their_line(tmp_path: Path) -> None:
    _, problems = parse(tmp_path, """\
analysis:
  metrics:
    vram_used_mib: {spread: {allowed_change_pct: -1}}
    request_latency_ms: {dry_run: yes please}
    requests_served:
      spread: {allowed_chnage_pct: 20}
    agent_health: {}
""")
    assert messages(problems)[:3] == [
        "phases/2-canary.yaml:6: allowed_change_pct in spread of analysis metric "
        "'vram_used_mib' must be in [0, inf], not -1",
        "phases/2-canary.yaml:7: dry_run in analysis metric 'request_latency_ms' must be "
        "true or false, not 'yes please'",
        "phases/2-canary.yaml:9: unknown key 'allowed_chnage_pct' in spread of analysis "
        "metric 'requests_served' (did you mean 'allowed_change_pct'?)"]
    _, problems = parse(tmp_path, "analysis:\n  metrics:\n    vram_used_mib: {spread: [50]}\n")
    assert messages(problems) == [
        "phases/2-canary.yaml:6: spread in analysis metric 'vram_used_mib' must be a mapping, "
        "{allowed_change_pct: 50}: how much wider (in %) the canary's interquartile range "
        "may grow, not [50]"]
