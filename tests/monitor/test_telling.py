"""monitor/telling.while_writing: a cycle's value is built while the journal writes its
rows, and is returned only once the write is done, the write's error raised."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from orchestrator.monitor.telling import while_writing


def test_the_cycle_value_is_built_while_the_journal_writes_and_returned_after_it() -> None:
    order: list[str] = []
    built = threading.Event()

    def write() -> None:
        order.append("write started")
        assert built.wait(10), "the value was not built while the write ran"
        order.append("write done")

    def build() -> str:
        built.set()
        order.append("built")
        return "cycle"

    with ThreadPoolExecutor(max_workers=1) as pool:
        assert while_writing(write, build, pool) == "cycle"
        assert order[-1] == "write done"  # it returned only once the write was done

        def broken() -> None:
            raise OSError("the journal is down")

        with pytest.raises(OSError, match="journal is down"):
            while_writing(broken, lambda: "cycle", pool)
    # without a pool: the write first, then the value
    order.clear()
    built.clear()
    def value() -> str:
        order.append("b")
        return "v"

    assert while_writing(lambda: order.append("w"), value, None) == "v"
    assert order == ["w", "b"]
