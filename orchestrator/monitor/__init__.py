"""The trigger monitor, beside the engine: it watches a run's triggers while the run acts.

- `trigger_monitor`: `TriggerMonitor`, the supervised poll loop that folds readings into
  trigger states, journals them and reports fires to the run;
- `poller` reads a cycle, `fold` turns it and the triggers' state into new state and rows
  (pure), `announce` reads the fold's decisions out as events and fires (pure),
  `telling` journals and tells them; `xid`, `text`, `heap` serve the loop;
- `baselines`: phase-start and named baselines (which triggers need one, which are
  missing before a phase may start);
- `checker`: `MetricChecker`, the engine's `check:`/`baseline:` steps and the re-check
  after a rollback;
- `preflight`: what must hold before a phase starts (NVML where a metric needs it,
  alert sources that can be reached).

It reads through `orchestrator.metrics` and writes through `orchestrator.state`.
"""
