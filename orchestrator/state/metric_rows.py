"""Baselines, samples and trigger states: the metrics a run's triggers read and judged."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from orchestrator.state.base import Bulk
from orchestrator.state.journal_core import JournalCore
from orchestrator.state.records import utc_stamp


class MetricRows(JournalCore):
    """Baselines, samples and trigger states: the metrics a run's triggers read and judged."""

    # --- baselines and samples (metrics) ---------------------------------------------------
    def save_baseline(self, host: str, name: str, values: dict[str, float],
                      run_id: str | None) -> None:
        at = utc_stamp()
        self._write_or_batch(lambda db: db.executemany(
            "INSERT INTO baselines (host, name, metric, value, captured_at, run_id) "
            "VALUES (?,?,?,?,?,?) ON CONFLICT (host, name, metric) DO UPDATE SET "
            "value = excluded.value, captured_at = excluded.captured_at, "
            "run_id = excluded.run_id",
            [(host, name, metric, value, at, run_id) for metric, value in values.items()]))

    def baseline(self, host: str, name: str) -> dict[str, float]:
        rows = self._query("SELECT metric, value FROM baselines WHERE host = ? AND name = ?",
                           (host, name))
        return {m: v for m, v in rows}

    def add_sample(self, run_id: str, host: str, phase: int, trigger: str, metric: str,
                   t: float, value: float | None, breaching: bool, state: str,
                   threshold: float | None = None, baseline: float | None = None) -> None:
        self._write(lambda db: db.execute(
            "INSERT INTO samples (run_id, host, phase, trigger, metric, at, t, value, breaching, "
            "state, threshold, baseline) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (run_id, host, phase, trigger, metric, utc_stamp(), t, value, int(breaching), state,
             threshold, baseline)))

    def set_trigger_state(self, host: str, phase: int, trigger: str, run_id: str, status: str,
                          value: float | None, threshold: float | None, baseline: float | None,
                          breaching_since: str | None, text: str) -> None:
        self._write(lambda db: db.execute(
            "INSERT INTO trigger_states (migration, host, phase, trigger, run_id, status, value, "
            "threshold, baseline, breaching_since, updated_at, text) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT (migration, host, phase, trigger) DO UPDATE SET run_id = excluded.run_id, "
            "status = excluded.status, value = excluded.value, threshold = excluded.threshold, "
            "baseline = excluded.baseline, breaching_since = excluded.breaching_since, "
            "updated_at = excluded.updated_at, text = excluded.text",
            (self.migration, host, phase, trigger, run_id, status, value, threshold, baseline,
             breaching_since, utc_stamp(), text)))

    def record_cycle(self, samples: Sequence[tuple[str, str, int, str, str, float, float | None,
                                                   bool, str, float | None, float | None]],
                     states: Sequence[tuple[str, int, str, str, str, float | None, float | None,
                                            float | None, str | None, str]]) -> None:
        """One poll cycle's samples and trigger states, in one transaction.

        A cycle of 200 hosts x 3 triggers is 1,200 rows; written one transaction each
        (`add_sample`, `set_trigger_state`) that is 1,200 commits (fsyncs on SQLite,
        round trips on PostgreSQL) per poll interval. Rows are in the order of those
        two methods' parameters: samples `(run_id, host, phase, trigger, metric, t,
        value, breaching, state, threshold, baseline)`, states `(host, phase, trigger,
        run_id, status, value, threshold, baseline, breaching_since, text)`.
        """
        if not samples and not states:
            return
        at = utc_stamp()

        # nothing in the transaction reads them back: the backend loads them its fastest
        # way (COPY on PostgreSQL)
        self._write(lambda db: None, [
            Bulk("INSERT INTO samples (run_id, host, phase, trigger, metric, at, t, value, "
                 "breaching, state, threshold, baseline) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                 [(r, h, p, tr, m, at, t, v, int(b), st, th, bl)
                  for r, h, p, tr, m, t, v, b, st, th, bl in samples]),
            Bulk("INSERT INTO trigger_states (migration, host, phase, trigger, run_id, status, "
                 "value, threshold, baseline, breaching_since, updated_at, text) "
                 "VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
                 "ON CONFLICT (migration, host, phase, trigger) DO UPDATE SET "
                 "run_id = excluded.run_id, "
                 "status = excluded.status, value = excluded.value, "
                 "threshold = excluded.threshold, baseline = excluded.baseline, "
                 "breaching_since = excluded.breaching_since, "
                 "updated_at = excluded.updated_at, text = excluded.text",
                 [(self.migration, h, p, tr, r, st, v, th, bl, since, at, text)
                  for h, p, tr, r, st, v, th, bl, since, text in states])])

    def trigger_states(self, host: str, phase: int) -> list[dict[str, Any]]:
        rows = self._query("SELECT trigger, run_id, status, value, threshold, baseline, "
                           "breaching_since, updated_at, text FROM trigger_states "
                           "WHERE migration = ? AND host = ? AND phase = ? ORDER BY trigger",
                           (self.migration, host, phase))
        keys = ("trigger", "run_id", "status", "value", "threshold", "baseline",
                "breaching_since", "updated_at", "text")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def all_trigger_states(self, hosts: list[str] | None = None
                           ) -> dict[tuple[str, int], list[dict[str, Any]]]:
        """`trigger_states` of every (host, phase), in one query: for `status` on many hosts
        (one query per phase costs a round trip each on a team database)."""
        rows = self._query("SELECT host, phase, trigger, run_id, status, value, threshold, "
                           "baseline, breaching_since, updated_at, text FROM trigger_states "
                           "WHERE migration = ? ORDER BY host, phase, trigger",
                           (self.migration,))
        keys = ("trigger", "run_id", "status", "value", "threshold", "baseline",
                "breaching_since", "updated_at", "text")
        wanted = set(hosts) if hosts is not None else None
        out: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for host, phase, *rest in rows:
            if wanted is None or host in wanted:
                out.setdefault((host, phase), []).append(dict(zip(keys, rest, strict=True)))
        return out

    def samples(self, run_id: str) -> list[dict[str, Any]]:
        rows = self._query("SELECT host, phase, trigger, metric, at, t, value, breaching, state, "
                           "threshold, baseline FROM samples WHERE run_id = ? ORDER BY "
                           f"{self.store.dialect.samples_order}", (run_id,))
        keys = ("host", "phase", "trigger", "metric", "at", "t", "value", "breaching", "state",
                "threshold", "baseline")
        return [dict(zip(keys, r, strict=True)) for r in rows]


