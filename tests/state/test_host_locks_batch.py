"""A run takes its hosts' advisory locks in one statement (10,000 hosts were 10,000 round
trips), with the same answer as one at a time: every lock or none, and the first busy
host named; the locks taken before a refusal are given back."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.state.locks import NS_HOST, advisory_key, as_oid
from orchestrator.state.open import StateSettings, open_state


def held_hosts(journal: object, hosts: list[str]) -> set[str]:
    held = journal.store._held(None)  # type: ignore[attr-defined]
    return {h for h in hosts if (as_oid(NS_HOST), as_oid(advisory_key(h))) in held}


def test_all_or_none_and_the_first_busy_host_named(request: pytest.FixtureRequest,
                                                    tmp_path: Path) -> None:
    url = request.getfixturevalue("pg_server").create_database()
    journal = open_state(tmp_path / ".migrate", StateSettings(url=url))
    store, availability = journal.store, journal.availability  # type: ignore[attr-defined]
    hosts = [f"h{i:03d}" for i in range(300)]
    try:
        first = store.claim("r1", ["h120", "h200"], availability)
        assert first.busy == []
        second = store.claim("r2", hosts, availability)
        assert second.busy == ["h120"]  # the first busy one in the claim's (sorted) order
        second.release()
        assert held_hosts(journal, hosts) == {"h120", "h200"}  # r2 gave back all it took

        first.release()
        third = store.claim("r3", hosts + ["h000"], availability)  # a name twice: once
        assert third.busy == []
        assert held_hosts(journal, hosts) == set(hosts)
        assert store.claim("r4", ["h299"], availability).busy == ["h299"]
        third.release()
        assert held_hosts(journal, hosts) == set()
    finally:
        journal.close()
