"""Every error `migrate` raises on purpose, and the exit code each one means.

The tree, so that callers can catch at the depth they care about::

    MigrateError                      exit 2 unless a subclass says otherwise
    ├── ConfigError                   bad project, inventory or usage: nothing was run (2)
    │     carries a list of Problem(file, line, message)
    ├── RefusedError                  another run holds the host, `requires` unmet,
    │   │                             interrupted run pending, precondition failing (4)
    │   └── LockHeldError             names the holder: pid, machine, command, since
    ├── NvmlUnavailableError          the NVML library is missing on a host (2)
    ├── RunnerError                   a runner could not even start (translated from
    │                                 ansible-runner / fabric / OS errors at the boundary)
    └── JournalUnavailableError       the journal stayed unwritable past state.timeout (3)
                                      (state/base.py, raised by the journal's writes)

Ctrl-C is not an exception: the signal handler cancels the run's CancelToken and the
engine takes the rollback edge; the outcome `interrupted_rolled_back` exits 130.

Outcomes of a run that *did* run (rolled back, rollback failed) are not exceptions:
the engine returns them as states, and `exit_codes.exit_code_for` maps both kinds
to the process exit code in one place.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with the project, pointing at the file and line to fix."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class MigrateError(Exception):
    """Base of every error raised on purpose by migrate."""

    exit_code = 2


class ConfigError(MigrateError):
    """The project (or the command line) is wrong; nothing was run."""

    exit_code = 2

    def __init__(self, problems: list[Problem] | str) -> None:
        if isinstance(problems, str):
            problems = [Problem("<command line>", 0, problems)]
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class RefusedError(MigrateError):
    """The request is valid but may not run now; nothing was run."""

    exit_code = 4


class LockHeldError(RefusedError):
    """Another run holds the host."""

    def __init__(self, host: str, pid: int, machine: str, command: str, since: str,
                 migration: str = "") -> None:
        self.host = host
        self.pid = pid
        self.migration = migration
        of = f" of migration {migration}" if migration else ""
        super().__init__(
            f"host {host} is held by another run{of}: pid {pid} on {machine}, "
            f"command {command!r}, since {since}"
        )


class NvmlUnavailableError(MigrateError):
    """NVML (the GPU driver library) cannot be used on a host."""

    exit_code = 2


class RunnerError(MigrateError):
    """A step runner could not start its work (missing binary, bad connection settings)."""

    exit_code = 2
