"""core/hostport.py: the one host:port splitter (listen/connect addresses, label values)."""

from __future__ import annotations

import pytest

from orchestrator.core.hostport import is_loopback_host, split_host_port, strip_port


@pytest.mark.parametrize(("value", "host"), [
    ("main:9400", "main"), ("main", "main"), ("10.0.0.5:9100", "10.0.0.5"),
    ("10.0.0.7:9400", "10.0.0.7"), ("gpu-3", "gpu-3"),
    ("[::1]:9100", "::1"), ("[::1]", "::1"), ("::1", "::1"), ("fe80::1", "fe80::1"),
    ("[fe80::1%eth0]:9400", "fe80::1%eth0"), ("2001:db8::7", "2001:db8::7"),
    ("http://main:9400/metrics", "main"), ("https://[::1]:443/probe", "::1"),
    ("main:notaport", "main:notaport"), ("main:", "main:"), (" main:9400 ", "main"),
    ("Main:9400", "Main")])
def test_strip_port_drops_a_port_and_keeps_everything_else(value: str, host: str) -> None:
    assert strip_port(value) == host


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:9095", ("127.0.0.1", 9095)), ("[::1]:9095", ("::1", 9095)),
    (":9095", ("", 9095)), ("[::]:0", ("::", 0)), ("main:65535", ("main", 65535))])
def test_split_host_port(text: str, expected: tuple[str, int]) -> None:
    assert split_host_port(text) == expected


@pytest.mark.parametrize("bad", ["9095", "host:", "::1:9095", "h:99999", "h:port", "", "[::1]"])
def test_split_host_port_refuses_what_is_not_host_port(bad: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT|brackets"):
        split_host_port(bad)


def test_an_unbracketed_ipv6_address_is_told_to_use_brackets() -> None:
    with pytest.raises(ValueError, match=r"\[::1\]:PORT"):
        split_host_port("::1:9095")


def test_loopback_hosts() -> None:
    assert is_loopback_host("127.0.0.2") and is_loopback_host("::1")
    assert is_loopback_host("localhost") and is_loopback_host("LOCALHOST")
    assert not is_loopback_host("") and not is_loopback_host("0.0.0.0")
    assert not is_loopback_host("10.0.0.5") and not is_loopback_host("example.org")
