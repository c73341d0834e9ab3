"""`CycleMemo`: the reads of one poll cycle share what they fetch. `get_many` computes the
keys nobody asked for yet in one batch, waits for those another reader is computing, and
hands each key's failure (an exception value) to every reader of that key."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from orchestrator.metrics.sources.base import CycleMemo


def test_get_many_computes_only_missing_keys_in_one_call_and_get_reuses_them() -> None:
    memo = CycleMemo()
    calls: list[list[Any]] = []

    def compute(keys: list[Any]) -> dict[Any, Any]:
        calls.append(list(keys))
        return {k: k * 10 for k in keys}

    assert memo.get(1, lambda: 99) == 99
    assert memo.get_many([1, 2, 3], compute) == {1: 99, 2: 20, 3: 30}
    assert calls == [[2, 3]]
    assert memo.get_many([3, 4], compute) == {3: 30, 4: 40}
    assert calls == [[2, 3], [4]]
    assert memo.get(2, lambda: -1) == 20


def test_an_exception_value_is_that_keys_failure_for_every_reader() -> None:
    memo = CycleMemo()
    boom = OSError("refused")
    got = memo.get_many(["a", "b"], lambda keys: {"a": 1, "b": boom})
    assert got == {"a": 1, "b": boom}
    with pytest.raises(OSError, match="refused"):
        memo.get("b", lambda: 2)
    assert isinstance(memo.get_many(["c"], lambda keys: {})["c"], LookupError)


def test_a_batch_that_raises_fails_its_keys_for_later_readers_too() -> None:
    memo = CycleMemo()

    def broken(keys: list[Any]) -> dict[Any, Any]:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        memo.get_many(["x"], broken)
    assert isinstance(memo.get_many(["x"], lambda keys: {"x": 1})["x"], RuntimeError)


def test_a_key_another_reader_is_computing_is_waited_for_not_fetched_again() -> None:
    memo = CycleMemo()
    started, release = threading.Event(), threading.Event()
    calls: list[list[Any]] = []

    def slow(keys: list[Any]) -> dict[Any, Any]:
        calls.append(list(keys))
        started.set()
        release.wait(5)
        return {k: "first" for k in keys}

    result: dict[Any, Any] = {}
    t = threading.Thread(target=lambda: result.update(memo.get_many(["u1", "u2"], slow)))
    t.start()
    assert started.wait(5)
    second: dict[Any, Any] = {}
    t2 = threading.Thread(target=lambda: second.update(
        memo.get_many(["u2", "u3"], lambda keys: calls.append(list(keys)) or
                      {k: "second" for k in keys})))
    t2.start()
    t2.join(0.2)
    assert t2.is_alive()  # u3 is done, u2 waits for the first batch
    release.set()
    t.join(5)
    t2.join(5)
    assert calls == [["u1", "u2"], ["u3"]]
    assert second == {"u2": "first", "u3": "second"}
