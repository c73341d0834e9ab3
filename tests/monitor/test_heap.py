"""`monitor.heap.make_room`: the collector's youngest generation is raised to what a
cycle over the watched (host, trigger) pairs makes, bounded, never lowered, and left
alone when the collector is off. (The process's setting: each test puts it back.)"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from orchestrator.monitor.heap import CEILING, PER_PAIR, make_room


@pytest.fixture(autouse=True)
def kept_threshold() -> Iterator[None]:
    before = gc.get_threshold()
    try:
        yield
    finally:
        gc.set_threshold(*before)


def test_a_big_fleet_raises_the_young_threshold_a_small_one_leaves_it() -> None:
    gc.set_threshold(700, 10, 10)
    make_room(200 * 3 // PER_PAIR)  # a small watch: the default is room enough
    assert gc.get_threshold() == (700, 10, 10)
    make_room(1_000 * 3)
    assert gc.get_threshold() == (PER_PAIR * 3_000, 10, 10)
    make_room(10)  # never lowered by a smaller monitor
    assert gc.get_threshold() == (PER_PAIR * 3_000, 10, 10)
    make_room(10_000_000)
    assert gc.get_threshold() == (CEILING, 10, 10)


def test_a_switched_off_collector_stays_off() -> None:
    gc.set_threshold(0, 10, 10)
    make_room(30_000)
    assert gc.get_threshold() == (0, 10, 10)
