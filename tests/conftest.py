"""Fixtures every floor uses. Floor-specific ones are in each floor's conftest.py; plain
helpers (builders, fakes, real services started as context managers) are in
tests/support/."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.servers import AgentServer, serving


@pytest.fixture
def agent() -> Iterator[AgentServer]:
    """A stand-in agent's HTTP endpoint (/health, /metrics) whose answers the test sets;
    fresh for each test, since tests change what it answers."""
    with serving(AgentServer()) as server:
        yield server
