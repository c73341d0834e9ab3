"""Metric sources: each reads one metric on one host and returns a `Reading`.

See `base.py` for the interface and `read_metric` for the one entry point the
engine uses. Every source module registers itself in `base.SOURCES`.
"""


def load_all() -> None:
    """Import every source module so each registers itself (done lazily, on first read)."""
    import importlib

    for name in ("http", "tcp", "command", "scripted", "exporter", "prometheus", "nvml"):
        importlib.import_module(f"orchestrator.monitoring.sources.{name}")
