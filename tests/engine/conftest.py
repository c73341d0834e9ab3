"""Fixtures of the engine floor: the two-host lab (network namespaces `main` and `pc2`,
each with its own sshd), built once per worker for every test that needs real SSH.

The tests that use it share the xdist group "netns", so one worker builds it once;
a test that cuts a host's link restores it before it ends.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.netns import Lab, two_hosts


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with two_hosts(tmp_path_factory.mktemp("lab")) as built:
        yield built
