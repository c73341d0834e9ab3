"""Which journal a command uses: the embedded one, or the team's PostgreSQL database.

`state:` in migration.yaml (all optional)::

    state:
      url: postgresql://migrate@db.internal/migrate   # $MIGRATE_STATE_URL overrides
      timeout: 30s

or `url: sqlite:///../shared-state/migrate.db`: an SQLite file that several migration
projects on one machine share (a path relative to the project directory, or absolute
with four slashes), so that one migration may require another without a database
server. Without a URL the journal is `.migrate/state.db` as always. With one, nothing is
written under `.migrate/state.db` (artifacts and reports still go to the checkout's
`.migrate/runs/`), and psycopg is imported only then, so the embedded `status`
pays nothing for the option.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.core.durations import parse_duration
from orchestrator.state.journal import Interrupted, Journal

ENV_URL = "MIGRATE_STATE_URL"
DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class StateSettings:
    url: str | None = None  # None: the embedded journal
    timeout: float = DEFAULT_TIMEOUT

    @property
    def embedded(self) -> bool:
        return self.url is None


def parse_state_settings(raw: Any, environ: Mapping[str, str] | None = None
                         ) -> tuple[StateSettings, list[str]]:
    """migration.yaml's `state:` mapping (or None) and the environment -> settings.

    Returns the settings and a list of problems, each a message for the `state` key
    (the config layer adds file and line). $MIGRATE_STATE_URL overrides `state.url`;
    an empty value means "not set".
    """
    environ = os.environ if environ is None else environ
    problems: list[str] = []
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        return StateSettings(), ["state: must be a mapping with `url` and/or `timeout`"]
    unknown = sorted(set(raw) - {"url", "timeout"})
    if unknown:
        problems.append(f"state: unknown key(s) {', '.join(map(str, unknown))} "
                        "(known: url, timeout)")
    url = environ.get(ENV_URL) or raw.get("url") or None
    source = f"${ENV_URL}" if environ.get(ENV_URL) else "state.url"
    if url is not None:
        if not isinstance(url, str):
            problems.append(f"{source}: must be a postgresql:// or sqlite:/// URL")
            url = None
        elif url.startswith("sqlite://") and not url.startswith("sqlite:///"):
            problems.append(f"{source}: {url!r}: a shared SQLite journal is sqlite:///PATH "
                            "(three slashes, then a path relative to the project)")
            url = None
        elif not url.startswith(("postgresql://", "postgres://", "sqlite:///")):
            shown = url.split("@")[-1] if "@" in url else url
            problems.append(f"{source}: {shown!r} is not a postgresql:// or sqlite:/// URL "
                            "(leave it unset for the embedded journal)")
            url = None
    timeout = DEFAULT_TIMEOUT
    if raw.get("timeout") is not None:
        try:
            timeout = parse_duration(raw["timeout"])
            if timeout <= 0:
                raise ValueError("state.timeout must be more than 0s")
        except ValueError as exc:
            problems.append(f"state.timeout: {exc}")
            timeout = DEFAULT_TIMEOUT
    return StateSettings(url, timeout), problems


def open_state(state_dir: Path, settings: StateSettings | None = None, *, reap: bool = True,
               clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep,
               on_unavailable: Callable[[str], None] | None = None,
               on_interrupted: Callable[[Interrupted], None] | None = None) -> Journal:
    """The project's journal: PostgreSQL when `settings.url` is set, else state_dir/state.db.

    Reaps dead runs first (as every command must before it looks at state), unless
    `reap=False`. Raises ConfigError for a URL that can never work (bad password, no
    such database) and JournalUnavailableError (exit 3) when the server does not
    answer within `settings.timeout`.
    """
    settings = settings or StateSettings()
    if settings.url is not None and settings.url.startswith("sqlite:///"):
        path = sqlite_path(settings.url, state_dir.parent)
        journal = Journal(path, timeout=settings.timeout, clock=clock, sleep=sleep,
                          on_unavailable=on_unavailable, on_interrupted=on_interrupted)
    elif settings.url is None:
        journal = Journal(state_dir / "state.db", timeout=settings.timeout, clock=clock,
                          sleep=sleep, on_unavailable=on_unavailable,
                          on_interrupted=on_interrupted)
    else:
        from orchestrator.state.postgres import PgStore

        journal = Journal(PgStore(settings.url), timeout=settings.timeout, clock=clock,
                          sleep=sleep, on_unavailable=on_unavailable,
                          on_interrupted=on_interrupted)
    if reap:
        journal.reap()
    return journal


def sqlite_path(url: str, root: Path) -> Path:
    """`sqlite:///rel/path.db` (relative to the project) or `sqlite:////abs/path.db`; the
    directory must exist (a typo must not create a journal nobody else reads)."""
    from orchestrator._exceptions import ConfigError

    rest = url[len("sqlite:///"):]
    path = Path(rest) if rest.startswith("/") else (root / rest)
    path = Path(os.path.normpath(path))
    if not rest or path.is_dir():
        raise ConfigError(f"state.url {url!r}: name a file, e.g. sqlite:///../shared-state/"
                          "migrate.db")
    if not path.parent.is_dir():
        raise ConfigError(f"state.url {url!r}: the directory {path.parent} does not exist; "
                          "create it (every migration sharing this journal points at it)")
    return path
