#!/usr/bin/env python3
"""Generate deploy/grafana/migrate.json, the Grafana dashboard of SPEC section 7, with
grafana-foundation-sdk (pinned in pyproject.toml, so the output is reproducible).

    python3 deploy/grafana/generate.py           # (re)write migrate.json beside this file
    python3 deploy/grafana/generate.py --check   # exit 1 when migrate.json is not current

Every panel reads only the series of orchestrator/telemetry/metrics.py, filtered by the
`migration` variable. `QUERIES` lists each panel's PromQL (the tests run every one of
them against a real Prometheus scraping the telemetry server).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "migrate.json"
UID = "migrate-overview"
SEL = 'migration=~"$migration"'

#: panel title -> [(ref id, PromQL, legend)]; the panels below are drawn from this table
QUERIES: dict[str, list[tuple[str, str, str]]] = {
    "Phase states by host": [
        ("A", f"max by (migration, host, phase, state) (migrate_phase_state{{{SEL}}}) == 1",
         "{{host}} phase {{phase}}: {{state}}")],
    "Trigger value against threshold: $trigger": [
        ("A", f'max by (migration, host, trigger) (migrate_trigger_value{{{SEL}, '
              f'trigger=~"$trigger"}})', "{{host}} {{trigger}}"),
        ("B", f'max by (migration, host, trigger) (migrate_trigger_threshold{{{SEL}, '
              f'trigger=~"$trigger"}})', "{{host}} {{trigger}} threshold")],
    "Triggers firing": [
        ("A", f"max by (migration, host, trigger) (migrate_trigger_firing{{{SEL}}})",
         "{{host}} {{trigger}}")],
    "Rollbacks by reason": [
        ("A", f"sum by (migration, phase, reason) (migrate_rollbacks_total{{{SEL}}})",
         "phase {{phase}}: {{reason}}")],
    "Canary score by wave": [
        ("A", f"max by (migration, phase, wave) (migrate_analysis_score{{{SEL}}}) "
              "or on() vector(0)", "phase {{phase}} wave {{wave}}")],
    "Active watcher": [
        ("A", f"max by (migration) (migrate_watch_active{{{SEL}}})", "{{migration}}")],
}


def build() -> Any:
    """The dashboard model (grafana_foundation_sdk.models.dashboard.Dashboard)."""
    from grafana_foundation_sdk.builders import common, stat, table, timeseries
    from grafana_foundation_sdk.builders import dashboard as dash
    from grafana_foundation_sdk.builders import prometheus as prom
    from grafana_foundation_sdk.models import dashboard as model
    from grafana_foundation_sdk.models.prometheus import PromQueryFormat

    ds = model.DataSourceRef(type_val="prometheus", uid="${datasource}")

    def queries(title: str, instant: bool = False, fmt: Any = None) -> list[Any]:
        out = []
        for ref, expr, legend in QUERIES[title]:
            q = prom.Dataquery().ref_id(ref).expr(expr).legend_format(legend).datasource(ds)
            q = q.instant() if instant else q.range()
            if fmt is not None:
                q = q.format(fmt)
            out.append(q)
        return out

    def steps(*pairs: tuple[float | None, str]) -> Any:
        return (dash.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE)
                .steps([model.Threshold(value=v, color=c) for v, c in pairs]))

    def mapping(values: dict[str, tuple[str, str]]) -> list[Any]:
        return [model.ValueMap(options={k: model.ValueMappingResult(text=t, color=c)
                                        for k, (t, c) in values.items()})]

    from grafana_foundation_sdk.models import common as cm

    def legend() -> Any:
        return (common.VizLegendOptions().show_legend(True).display_mode(cm.LegendDisplayMode.TABLE)
                .placement(cm.LegendPlacement.RIGHT))

    def tooltip() -> Any:
        return common.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(
            cm.SortOrder.DESCENDING)

    def last() -> Any:
        return common.ReduceDataOptions().values(False).calcs(["lastNotNull"])

    title = "Phase states by host"
    phases = (table.Panel().id(2).title(title).datasource(ds).height(9).span(12)
              .description("Each host's phases and the state each is in (one row per host "
                           "and phase; migrate_phase_state is 1 for the current state).")
              .show_header(True)
              .targets(queries(title, instant=True, fmt=PromQueryFormat.TABLE)))
    title = "Active watcher"
    watcher = (stat.Panel().id(4).title(title).datasource(ds).height(9).span(4)
               .description("1 on the active `migrate watch`, 0 on one standing by (or a "
                            "phase run, which is no watcher).")
               .mappings(mapping({"0": ("standing by", "orange"), "1": ("active", "green")}))
               .thresholds(steps((None, "orange"), (1, "green"))).reduce_options(last())
               .targets(queries(title)))
    title = "Canary score by wave"
    score = (stat.Panel().id(3).title(title).datasource(ds).height(9).span(8).min(0).max(100)
             .description("The latest canary analysis score per phase and wave (0-100; "
                          "wave 'all': a phase without waves). Before any analysis the "
                          "query falls back to a single 0 without labels.")
             .thresholds(steps((None, "red"), (75, "yellow"), (90, "green")))
             .reduce_options(last())
             .targets(queries(title)))
    title = "Trigger value against threshold: $trigger"
    values = (timeseries.Panel().id(6).title(title).datasource(ds).height(9).span(12)
              .repeat("trigger").repeat_direction("h").legend(legend()).tooltip(tooltip())
              .line_width(1)
              .description("The latest value of the trigger's metric on each host, with the "
                           "value at which it fires (baseline applied) as a dashed line.")
              .targets(queries(title))
              .override_by_regexp(".*threshold", [
                  model.DynamicConfigValue(id_val="custom.lineStyle",
                                           value={"fill": "dash", "dash": [10, 10]})]))
    title = "Triggers firing"
    firing = (timeseries.Panel().id(7).title(title).datasource(ds).height(8).span(12).min(0).max(1)
              .legend(legend()).tooltip(tooltip()).line_width(1)
              .line_interpolation(cm.LineInterpolation.STEP_AFTER)
              .description("1 while a trigger is firing on a host; it stays 1 after the "
                           "rollback it caused until the phase starts again there.")
              .targets(queries(title)))
    title = "Rollbacks by reason"
    rollbacks = (timeseries.Panel().id(8).title(title).datasource(ds).height(8).span(12).min(0)
                 .legend(legend()).tooltip(tooltip()).line_width(1)
                 .line_interpolation(cm.LineInterpolation.STEP_AFTER)
                 .description("Rollbacks started (one per host and phase) since the migrate "
                              "process began, by reason: a trigger's name, step_failed, "
                              "analysis or operator.")
                 .targets(queries(title)))

    datasource = (dash.DatasourceVariable("datasource").label("Prometheus")
                  .type("prometheus"))
    migration = (dash.QueryVariable("migration").label("Migration").datasource(ds)
                 .query("label_values(migrate_watch_active, migration)")
                 .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
                 .multi(True).include_all(True).all_value(".*"))
    trigger = (dash.QueryVariable("trigger").label("Trigger").datasource(ds)
               .query('label_values(migrate_trigger_value{migration=~"$migration"}, trigger)')
               .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
               .multi(True).include_all(True).all_value(".*"))
    board = (dash.Dashboard("migrate: staged migrations").uid(UID)
             .description("Phases, triggers, rollbacks and canary scores of `migrate` "
                          "(SPEC section 7), from its --metrics-port.")
             .tags(["migrate", "generated"]).refresh("10s").time("now-6h", "now")
             .with_variable(datasource).with_variable(migration).with_variable(trigger)
             .with_row(dash.Row("Overview").id(1))
             .with_panel(phases).with_panel(score).with_panel(watcher)
             .with_row(dash.Row("Triggers").id(5))
             .with_panel(values).with_panel(firing).with_panel(rollbacks))
    return board.build()


def render() -> str:
    from grafana_foundation_sdk.cog.encoder import JSONEncoder

    return JSONEncoder(sort_keys=True, indent=2).encode(build()) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when the committed migrate.json is not what this writes")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    text = render()
    json.loads(text)
    if args.check:
        current = args.out.read_text() if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is not current: run python3 deploy/grafana/generate.py",
                  file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
