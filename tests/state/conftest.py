"""Journals for the state floor's tests: one on either store, and one PostgreSQL journal a
module shares (a database of its own on the worker's shared server, tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.state.journal import Journal
from orchestrator.state.open import StateSettings, open_state
from tests.support.pg import PgServer


@pytest.fixture(params=["sqlite", "postgresql"])
def journal(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Journal]:
    """A fresh journal on each store: what one store does, the other must do too."""
    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_server").create_database()
    j = open_state(tmp_path / ".migrate", StateSettings(url=url))
    yield j
    j.close()


@pytest.fixture(scope="module")
def pg_journal(tmp_path_factory: pytest.TempPathFactory,
               pg_server: PgServer) -> Iterator[Journal]:
    """One PostgreSQL journal for a module's tests (they write disjoint runs)."""
    j = open_state(tmp_path_factory.mktemp("pg") / ".migrate",
                   StateSettings(url=pg_server.create_database()))
    yield j
    j.close()
