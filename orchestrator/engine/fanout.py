"""Run one function per host concurrently and keep the answers per host.

Every place that acts on several hosts at once (commands, checks, baselines,
undos) goes through here, so the thread-pool block is written once and its bound
(`forks`) is the same everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from orchestrator.config.inventory import Host

T = TypeVar("T")


def fan_out(hosts: list[Host], fn: Callable[[Host], T], limit: int = 50) -> dict[str, T]:
    """`fn(host)` for every host, at most `limit` at a time; {host name: answer}."""
    if not hosts:
        return {}
    if len(hosts) == 1:
        return {hosts[0].name: fn(hosts[0])}
    with ThreadPoolExecutor(max_workers=max(1, min(limit, len(hosts))),
                            thread_name_prefix="host") as pool:
        answers = list(pool.map(fn, hosts))
    return {h.name: a for h, a in zip(hosts, answers, strict=True)}
