"""Telemetry: the Prometheus metrics of SPEC section 7 (`--metrics-port`).

`telemetry.metrics.MigrateMetrics` is the one entry point: declare the hosts and phases,
`serve(port)`, subscribe `on_event` to the run's EventHooks, `observe` the monitor's
snapshot each poll, `close()`. prometheus-client is imported on first use.
"""
