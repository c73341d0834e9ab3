"""Which inventory host an alert is about, and whether it is the alert a trigger waits for.

An alert names its host in one label (`host_label`, default `instance`). Prometheus
fills `instance` with the scrape target's `host:port`, so the port is ignored; the
host part may be the inventory name (`main`) or the host's `ansible_host`
(`10.0.0.5`), both of which operators use as targets. Names compare
case-insensitively, as DNS does.

Several inventory hosts may share an address (the sandbox puts both on 127.0.0.1;
a fleet may run one inventory host per agent instance on one machine). An alert
whose label carries only that address then matches all of them, which is right for
a GPU alert of that machine; for alerts about one instance, relabel `instance` to the
inventory name in Prometheus, or narrow with `match:`.
"""

from __future__ import annotations

from collections.abc import Mapping

from orchestrator.config.inventory import Host
from orchestrator.core.hostport import strip_port


def host_names(host: Host) -> frozenset[str]:
    """The names an alert may use for this host: inventory name and ansible_host."""
    names = {host.name, str(host.vars.get("ansible_host", host.name))}
    return frozenset(strip_port(n).casefold() for n in names if n)


def label_names_host(value: str | None, host: Host) -> bool:
    """Does this label value (e.g. `main:9400`) name the host?"""
    if not value:
        return False
    return strip_port(value).casefold() in host_names(host)


def alert_matches(labels: Mapping[str, str], name: str, match: Mapping[str, str],
                  host_label: str, host: Host) -> bool:
    """An alert counts for a trigger on `host` when its name is the trigger's, every
    `match:` label is equal, and its `host_label` names the host. An alert without that
    label names no host, so it counts for none (a trigger acts on one host)."""
    if labels.get("alertname") != name:
        return False
    if any(labels.get(k) != v for k, v in match.items()):
        return False
    return label_names_host(labels.get(host_label), host)
