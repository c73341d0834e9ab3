"""The nvml source through a fake at the pynvml boundary, and the real no-GPU machine."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from orchestrator._exceptions import NvmlUnavailableError
from orchestrator.config.inventory import Host
from orchestrator.core.model import Metric, MetricKind
from orchestrator.metrics.sources.base import ReadContext
from orchestrator.metrics.sources.nvml import NvmlBackend, NvmlSource, nvml_available

MIB = 1024 * 1024


class FakeNvmlError(Exception):
    pass


def fake_pynvml(xid_events: list[int]) -> Any:
    """Just the pynvml functions the source calls, with numbers the test knows."""
    def wait(events: object, timeout: int) -> object:
        if not xid_events:
            raise FakeNvmlError("timeout")
        return xid_events.pop()

    return SimpleNamespace(
        NVMLError=FakeNvmlError,
        nvmlInit=lambda: None,
        nvmlDeviceGetHandleByIndex=lambda i: f"gpu{i}",
        nvmlDeviceGetMemoryInfo=lambda h: SimpleNamespace(used=6000 * MIB, total=24000 * MIB),
        nvmlDeviceGetUtilizationRates=lambda h: SimpleNamespace(gpu=87),
        nvmlDeviceGetComputeRunningProcesses=lambda h: [
            SimpleNamespace(pid=4242, usedGpuMemory=1500 * MIB),
            SimpleNamespace(pid=7, usedGpuMemory=900 * MIB)],
        nvmlEventTypeXidCriticalError=8,
        nvmlEventSetCreate=lambda: "set",
        nvmlDeviceRegisterEvents=lambda h, kind, s: None,
        nvmlEventSetWait=wait,
    )


def read(source: NvmlSource, field: str, **extra: object) -> float | None:
    metric = Metric("m", "nvml", MetricKind.NUMBER, {"field": field, **extra}, "skip", 120,
                    None, 1)
    host = Host("main", {"ansible_connection": "local"})
    ctx = ReadContext(host=host, hostvars={"main": host.vars}, phase=1, run_id="r",
                      elapsed=0, timeout=1)
    return source.read(metric, ctx).value


def test_fields_through_fake_pynvml(tmp_path: Path) -> None:
    xids: list[int] = []
    source = NvmlSource(NvmlBackend(fake_pynvml(xids)))
    assert read(source, "memory_used_mib") == 6000
    assert read(source, "memory_used_pct") == 25
    assert read(source, "utilization_pct") == 87
    pid_file = tmp_path / "agent.pid"
    pid_file.write_text("4242\n")
    assert read(source, "process_memory_mib", pid_file=str(pid_file)) == 1500
    assert read(source, "xid_errors") == 0
    xids.extend([79, 48])
    assert read(source, "xid_errors") == 2  # a counter: `increase: 0` fires on it
    assert read(source, "xid_errors") == 2


def test_missing_nvml_is_a_clear_error_not_a_crash() -> None:
    # this machine has no NVIDIA driver: the real pynvml cannot load libnvidia-ml
    source = NvmlSource(NvmlBackend())
    with pytest.raises(NvmlUnavailableError, match=r"^main: NVML is not available"):
        read(source, "memory_used_mib")
    why = nvml_available(Host("main", {"ansible_connection": "local"}), None, NvmlBackend())
    assert why is not None and why.startswith("main: NVML is not available")


def test_plan_with_an_nvml_trigger_exits_2_naming_the_host(tmp_path: Path) -> None:
    from tests.support.projects import make_project

    proj = make_project(tmp_path, migration=(
        "name: gpu\ninventory: inventory/hosts.yml\nmetrics:\n"
        "  vram: {source: nvml, field: memory_used_mib}\n"
        "triggers:\n  vram_high: {metric: vram, above: 20000}\n"))
    proj.phase(1, "p", "phase: 1\nsteps:\n  - id: w\n    wait: 1s\n")
    res = proj.migrate("plan", "1", "--host", "main")
    assert res.returncode == 2
    assert res.stderr.startswith("migration.yaml:4: metric 'vram' (nvml) cannot be read: main: "
                                 "NVML is not available")
    assert "Traceback" not in res.stderr
