"""The one rule for a test whose real part (a server, a namespace, a browser, a binary)
cannot be had here: skip on a developer's machine, fail under CI=true, so that CI never
passes by skipping what it was meant to prove."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def missing(what: str) -> NoReturn:
    """Skip saying `what` is missing; fail instead under CI=true."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {what}")
    pytest.skip(what)


def require(ok: bool, what: str) -> None:
    """Go on when `ok`; else `missing(what)`. (`ok` first, as in an assert; a message
    passed first would be true and never skip, so it is refused.)"""
    if not isinstance(ok, bool):
        raise TypeError(f"require(ok, what): ok must be a bool, not {ok!r}")
    if not ok:
        missing(what)
