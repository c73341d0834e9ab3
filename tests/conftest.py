"""Fixtures every floor uses. Floor-specific ones are in each floor's conftest.py; plain
helpers (builders, fakes, real services started as context managers) are in
tests/support/."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.netns import Lab, two_hosts
from tests.support.pg import PgServer, running_server
from tests.support.servers import AgentServer, serving

#: tests/fixtures holds data the tests read (agents, manifests), some of it named like a
#: test module (`*_test.py`): never collected
collect_ignore = ["fixtures"]


@pytest.fixture
def agent() -> Iterator[AgentServer]:
    """A stand-in agent's HTTP endpoint (/health, /metrics) whose answers the test sets;
    fresh for each test, since tests change what it answers."""
    with serving(AgentServer()) as server:
        yield server


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One real PostgreSQL server per worker for every test that needs a database and leaves
    the server itself alone: each takes a database of its own (`create_database()`). A test
    that stops, crashes or restarts a server starts its own with `running_server()`."""
    with running_server() as server:
        yield server


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The two-host lab (network namespaces `main` and `pc2`, each with its own sshd),
    built once per worker for every test that needs real SSH (engine and runners floors).
    Those tests share the xdist group "netns", so one worker builds it; a test that cuts
    a host's link restores it before it ends."""
    with two_hosts(tmp_path_factory.mktemp("lab")) as built:
        yield built


#: floors whose tests are logic on values and files: milliseconds each
_QUICK_FLOORS = ("core", "analysis", "config")


def _module_weight(items: list[pytest.Item]) -> int:
    """0 for the drills (a minute or more each), 1 for a module with an integration test
    (real services: seconds each), 3 for a module of a quick floor, 2 for the rest (most
    start `migrate` as a process)."""
    floor = items[0].path.parent.name
    integration = any(i.get_closest_marker("integration") for i in items)
    if integration:
        return 0 if floor == "drills" else 1
    return 3 if floor in _QUICK_FLOORS else 2


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest modules first, the quick ones last: the workers then end together rather
    than one of them finishing a drill long after the others ran out of tests. Each
    module's tests stay together and in their order, so module-scoped fixtures are built
    once."""
    modules: dict[object, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.path, []).append(item)
    ordered = sorted(modules.values(), key=_module_weight)  # stable: collection order kept
    items[:] = [item for module in ordered for item in module]
