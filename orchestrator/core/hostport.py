"""`host:port` text: the one place that splits it, IPv6 brackets included.

Two questions are asked of such text, and they differ in strictness:

- `split_host_port("[::1]:9095")` -> `("::1", 9095)`: an address we are told to listen
  on or connect to. It must carry a port (0-65535); an IPv6 address must be in brackets,
  since `::1:9095` could mean either; `":9095"` is every interface (host ""). Anything
  else is a ValueError saying what is wrong.
- `strip_port("10.0.0.7:9400")` -> `"10.0.0.7"`: the host a label value names
  (Prometheus's `instance`, an alert's host label). Never fails: the port is dropped
  when there is one (`h:9400`, `[::1]:9400`, `http://h:80/probe` as blackbox targets
  write it) and the text is kept as it is when there is none (`h`, `::1`, `fe80::1`).
  Surrounding blanks are ignored; case is kept (callers compare as they need).

`is_loopback_host` says whether a host part is this machine only (what a listener
that needs no authentication may bind to).
"""

from __future__ import annotations

from urllib.parse import urlsplit

MAX_PORT = 65535


def split_host_port(text: str) -> tuple[str, int]:
    """"HOST:PORT", "[V6]:PORT" or ":PORT" (all interfaces) -> (host, port); ValueError if not."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= MAX_PORT:
        raise ValueError(f"{text!r} is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, [::1]:PORT")
    return host, int(port)


def strip_port(value: str) -> str:
    """The host part of a label value: 'main:9100' -> 'main', '[::1]:9100' -> '::1',
    '::1' -> '::1', 'http://h:80/x' -> 'h', 'main' -> 'main' (see the module doc)."""
    text = value.strip()
    if "://" in text:
        text = urlsplit(text).netloc or text
    if text.startswith("["):
        end = text.find("]")
        if end != -1:
            return text[1:end]
        return text
    if text.count(":") == 1:
        host, port = text.split(":")
        if port.isdigit():
            return host
    return text


def is_loopback_host(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and "localhost"; an empty host (all interfaces) is not."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
