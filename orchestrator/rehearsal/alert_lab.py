"""A real Prometheus and a real Alertmanager on loopback ports, for the sandbox and tests.

A rehearsal whose scenario needs alerts (and the alert tests and bench) needs the whole
path the operators run in production: the shipped rules in `deploy/prometheus/rules/`, evaluated
by Prometheus against the stand-ins' `/metrics`, routed by Alertmanager to migrate's
receiver with a Bearer token. This module starts Debian's `prometheus` and
`prometheus-alertmanager` binaries (upstream's `alertmanager` name works too) in a
directory it is given, each on its own free loopback port with its own storage, and
stops them again. Alertmanager clustering is off (`--cluster.listen-address=`), so
nothing listens beyond the one port.

Rehearsals shorten durations by a time scale; `scale_rules` does the same to each
rule's `for:` (1m at 1/30 is 2s) and never touches a threshold.

Nothing here starts at import or construction; `start_lab` returns an `AlertLab` that
is a context manager, and `LabUnavailable` says exactly what to install when the
binaries are missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from orchestrator.config.inventory import Host
from orchestrator.core.durations import parse_duration

PROMETHEUS_NAMES = ("prometheus",)
ALERTMANAGER_NAMES = ("prometheus-alertmanager", "alertmanager")
INSTALL_HINT = ("install them with `apt-get install prometheus prometheus-alertmanager` "
                "(Debian/Ubuntu; then `systemctl stop prometheus prometheus-alertmanager` "
                "if the packaged services are not wanted: the lab starts its own)")
RULES_DIR = Path("deploy/prometheus/rules")


class LabUnavailable(RuntimeError):
    """The binaries are not installed, or a server would not start; says what to do."""


def find_binary(names: Sequence[str]) -> str | None:
    for name in names:
        found = shutil.which(name) or (f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}",
                                                                        os.X_OK) else None)
        if found:
            return found
    return None


def missing_binaries() -> list[str]:
    """Debian package names whose binaries are missing (empty when the lab can start)."""
    missing = []
    if find_binary(PROMETHEUS_NAMES) is None:
        missing.append("prometheus")
    if find_binary(ALERTMANAGER_NAMES) is None:
        missing.append("prometheus-alertmanager")
    return missing


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _format_ms(seconds: float) -> str:
    return "0s" if seconds <= 0 else f"{max(1, round(seconds * 1000))}ms"


def scale_rules(text: str, scale: float) -> str:
    """A Prometheus rule file with every `for:` (and `keep_firing_for:`) times `scale`."""
    doc = yaml.safe_load(text) or {}
    if scale != 1:
        for group in doc.get("groups") or []:
            for rule in group.get("rules") or []:
                for key in ("for", "keep_firing_for"):
                    if key in rule:
                        rule[key] = _format_ms(parse_duration(str(rule[key])) * scale)
    return yaml.safe_dump(doc, sort_keys=False)


def default_rule_files(project_root: Path) -> list[Path]:
    return sorted((project_root / RULES_DIR).glob("*.yml"))


def sandbox_targets(hosts: Iterable[Host]) -> dict[str, str]:
    """instance label -> scrape address for the stand-ins' /metrics. `instance` is set to
    `<inventory name>:<port>`, because both sandbox hosts share 127.0.0.1: an alert must
    name one of them, not both."""
    out = {}
    for host in hosts:
        port = host.vars.get("dcgm_exporter_port") or host.vars.get("health_port")
        if port:
            out[f"{host.name}:{port}"] = f"{host.address}:{port}"
    return out


@dataclass
class Daemon:
    """One server process the lab started, with its URL and log file."""

    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def wait_ready(self, timeout: float) -> None:
        """Until `/-/ready` answers 200; LabUnavailable if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise LabUnavailable(f"{self.name} exited with {self.proc.returncode}:\n"
                                     f"{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                self.close()
                raise LabUnavailable(f"{self.name} not ready after {timeout:g}s:\n"
                                     f"{self.log_tail()}")
            time.sleep(0.1)


def _spawn(name: str, argv: list[str], workdir: Path, url: str) -> Daemon:
    log_path = workdir / f"{name}.log"
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
    try:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=workdir)
    finally:
        log.close()
    return Daemon(name, url, proc, log_path)


def start_alertmanager(workdir: Path, webhook_url: str, *, token: str | None = None,
                       port: int | None = None, group_wait: str = "0s",
                       group_interval: str = "1s", repeat_interval: str = "1h",
                       timeout: float = 30) -> Daemon:
    """Alertmanager routing every alert to migrate's webhook, with the Bearer token read
    from a 0600 file (`credentials_file`), never written into its config."""
    binary = find_binary(ALERTMANAGER_NAMES)
    if binary is None:
        raise LabUnavailable(f"Alertmanager is not installed: {INSTALL_HINT}")
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    webhook: dict[str, object] = {"url": webhook_url, "send_resolved": True, "max_alerts": 0}
    if token is not None:
        token_file = workdir / "migrate-alert-token"
        token_file.touch(mode=0o600)
        token_file.write_text(token)
        webhook["http_config"] = {"authorization": {"type": "Bearer",
                                                    "credentials_file": str(token_file)}}
    config = {
        "route": {"receiver": "migrate", "group_by": ["alertname", "instance"],
                  "group_wait": group_wait, "group_interval": group_interval,
                  "repeat_interval": repeat_interval},
        "receivers": [{"name": "migrate", "webhook_configs": [webhook]}],
    }
    cfg = workdir / "alertmanager.yml"
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    url = f"http://127.0.0.1:{port}"
    daemon = _spawn("alertmanager", [
        binary, f"--config.file={cfg}", f"--storage.path={workdir / 'alertmanager-data'}",
        f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
        f"--web.external-url={url}"], workdir, url)
    daemon.wait_ready(timeout)
    return daemon


def start_prometheus(workdir: Path, targets: Mapping[str, str], *,
                     rule_files: Sequence[Path] = (), alertmanager_url: str | None = None,
                     time_scale: float = 1.0, port: int | None = None,
                     interval: str = "1s", timeout: float = 60) -> Daemon:
    """Prometheus scraping `targets` (instance label -> host:port) every `interval`,
    evaluating the rule files (their `for:` scaled) and sending alerts to Alertmanager."""
    binary = find_binary(PROMETHEUS_NAMES)
    if binary is None:
        raise LabUnavailable(f"Prometheus is not installed: {INSTALL_HINT}")
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    rules_dir = workdir / "rules"
    rules_dir.mkdir(exist_ok=True)
    rule_paths = []
    for src in rule_files:
        dest = rules_dir / src.name
        dest.write_text(scale_rules(src.read_text(), time_scale))
        rule_paths.append(str(dest))
    config: dict[str, object] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": rule_paths,
        "scrape_configs": [{
            "job_name": "mma",
            "static_configs": [{"targets": [address], "labels": {"instance": instance}}
                               for instance, address in sorted(targets.items())],
        }],
    }
    if alertmanager_url:
        host = alertmanager_url.split("://", 1)[-1].rstrip("/")
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [host]}]}]}
    cfg = workdir / "prometheus.yml"
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    url = f"http://127.0.0.1:{port}"
    daemon = _spawn("prometheus", [
        binary, f"--config.file={cfg}", f"--storage.tsdb.path={workdir / 'prometheus-data'}",
        f"--web.listen-address=127.0.0.1:{port}", "--query.lookback-delta=5s",
        "--rules.alert.resend-delay=1s"], workdir, url)
    daemon.wait_ready(timeout)
    return daemon


@dataclass
class AlertLab:
    """Prometheus (+ Alertmanager) started together; stop both with close() or `with`."""

    prometheus: Daemon
    alertmanager: Daemon | None
    daemons: list[Daemon] = field(default_factory=list)

    @property
    def prometheus_url(self) -> str:
        return self.prometheus.url

    @property
    def alertmanager_url(self) -> str | None:
        return self.alertmanager.url if self.alertmanager else None

    def close(self) -> None:
        for daemon in reversed(self.daemons):
            daemon.close()

    def __enter__(self) -> AlertLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_lab(workdir: Path, targets: Mapping[str, str], *, rule_files: Sequence[Path],
              webhook_url: str | None, token: str | None, time_scale: float = 1.0,
              interval: str = "1s") -> AlertLab:
    """Alertmanager (when `webhook_url` is given) and Prometheus, wired together.
    `interval` is Prometheus's scrape and evaluation interval and Alertmanager's
    group_interval. LabUnavailable (with the install hint) when a binary is missing or
    will not start."""
    missing = missing_binaries() if webhook_url else (
        ["prometheus"] if find_binary(PROMETHEUS_NAMES) is None else [])
    if missing:
        raise LabUnavailable(f"{' and '.join(missing)} not installed: {INSTALL_HINT}")
    started: list[Daemon] = []
    try:
        am = None
        if webhook_url:
            am = start_alertmanager(workdir / "alertmanager", webhook_url, token=token,
                                    group_interval=interval)
            started.append(am)
        prom = start_prometheus(workdir / "prometheus", targets, rule_files=rule_files,
                                alertmanager_url=am.url if am else None,
                                time_scale=time_scale, interval=interval)
        started.append(prom)
    except BaseException:
        for daemon in reversed(started):
            daemon.close()
        raise
    return AlertLab(prom, am, started)


def start_sandbox_lab(project_root: Path, hosts: Iterable[Host], workdir: Path, *,
                      receiver_url: str, token: str, time_scale: float,
                      interval: str = "500ms") -> AlertLab:
    """What an alert rehearsal starts: Prometheus with the project's shipped
    rules (`deploy/prometheus/rules/*.yml`, `for:` scaled by the rehearsal's time scale)
    scraping every sandbox stand-in's /metrics with `instance` = `<host>:<port>`, and
    Alertmanager pushing to migrate's receiver at `receiver_url` with `token`. Scrape,
    evaluation and group intervals are `interval` (500ms: a scaled `for: 1m` is 2s, and the
    whole path from fault to push stays well inside a scaled soak). LabUnavailable
    (naming the packages to install) when they are missing."""
    rules = default_rule_files(project_root)
    if not rules:
        raise LabUnavailable(f"no alert rules under {project_root / RULES_DIR}")
    return start_lab(workdir, sandbox_targets(hosts), rule_files=rules,
                     webhook_url=receiver_url, token=token, time_scale=time_scale,
                     interval=interval)
