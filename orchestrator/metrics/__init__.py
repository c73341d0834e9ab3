"""The lowest floor of watching: reading metrics and judging triggers.

- `sources/`: one module per metric source (prometheus, exporter, nvml, http, tcp,
  command, analyze, scripted), each describing its keys to the config layer's registry;
- `reader`: one metric on one host, through its source;
- `triggers`: the pure trigger conditions (above, degrade_pct, increase, failing, for:);
- `alerts/`: Prometheus/Alertmanager alerts as trigger readings (push receiver, poller).

Nothing here knows about runs, phases in flight or the journal: the monitor
(`orchestrator.monitor`) and the engine build on it, never the other way round.
"""
