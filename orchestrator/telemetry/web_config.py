"""Where `/metrics` listens, and the web configuration file of Prometheus's own exporters.

`--metrics-listen ADDR:PORT` (`0.0.0.0:9464`, `[::]:9464`, `10.0.0.5:9464`) says where;
without it `/metrics` listens on 127.0.0.1 at `--metrics-port`. Either alone is enough;
given together, their ports must agree.

`--web-config FILE` is the file node_exporter, blackbox_exporter and every exporter built
on prometheus/exporter-toolkit read, so a team that already runs exporters writes the
same file for migrate:

    tls_server_config:
      cert_file: server.crt          # relative paths: from the file's own directory
      key_file: server.key
      client_ca_file: clients.pem    # optional: with client_auth_type, mutual TLS
      client_auth_type: RequireAndVerifyClientCert
      min_version: TLS12             # optional: TLS10..TLS13
      max_version: TLS13
    basic_auth_users:
      prometheus: $2y$10$...         # bcrypt hashes (htpasswd -nBC 10 "" | tr -d ':')

Everything is checked when the file is read, before anything runs: unknown keys, a
certificate or key that cannot be loaded, a hash that is not bcrypt; each is one
ConfigError at FILE:LINE (exit 2). A user's password is checked with the `bcrypt`
library; a right answer is remembered (by a SHA-256 of the user, password and hash) so
that a Prometheus scraping every 15 s does not pay bcrypt's deliberate cost each time.
An unknown user is checked against a dummy hash, so a wrong user and a wrong password
take the same time.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator._exceptions import ConfigError, Problem
from orchestrator.core.hostport import split_host_port

DEFAULT_ADDR = "127.0.0.1"
_TOP_KEYS = ("tls_server_config", "basic_auth_users", "http_server_config")
_TLS_KEYS = ("cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version",
             "max_version", "cipher_suites", "curve_preferences",
             "prefer_server_cipher_suites", "client_allowed_sans")
#: exporter-toolkit's client_auth_type values -> (ask for a certificate, require one)
CLIENT_AUTH = {"NoClientCert": ssl.CERT_NONE, "RequestClientCert": ssl.CERT_OPTIONAL,
               "RequireAnyClientCert": ssl.CERT_REQUIRED,
               "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
               "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}
TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
#: a valid bcrypt hash of nothing anyone types, checked for unknown users
# $2y$ (or $2a$/$2b$), a two-digit cost 04..31, then 22 characters of salt and 31 of digest
# in bcrypt's base64: 60 characters in all. The bcrypt library accepts a salt with no digest
# (checkpw is then just False), so a hash cut short would lock its user out unseen.
_BCRYPT_HASH = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
_DUMMY_HASH = b"$2b$10$7MeLE8UEhf.o/g3TOFKDteSZPG51P7s5wQxv6SJfUUVycUHiEMm1u"


@dataclass(frozen=True)
class TlsServerConfig:
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    client_auth: ssl.VerifyMode = ssl.CERT_NONE
    min_version: ssl.TLSVersion | None = None
    max_version: ssl.TLSVersion | None = None

    def context(self) -> ssl.SSLContext:
        """The server's SSL context (OSError/ssl.SSLError when a file cannot be used)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = self.min_version or ssl.TLSVersion.TLSv1_2
        if self.max_version is not None:
            ctx.maximum_version = self.max_version
        ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        if self.client_ca_file is not None:
            ctx.load_verify_locations(cafile=str(self.client_ca_file))
        ctx.verify_mode = self.client_auth
        return ctx


@dataclass(frozen=True)
class WebConfig:
    """A read and checked web configuration file."""

    path: Path
    tls: TlsServerConfig | None = None
    users: dict[str, bytes] = field(default_factory=dict)  # name -> bcrypt hash
    _ssl: Any = field(default=None, compare=False, repr=False)  # the checked SSL context
    _known: set[bytes] = field(default_factory=set, compare=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        return self._ssl  # type: ignore[no-any-return]

    @property
    def needs_auth(self) -> bool:
        return bool(self.users)

    def authorized(self, user: str, password: str) -> bool:
        """Does this user and password match `basic_auth_users`?"""
        import bcrypt

        hashed = self.users.get(user)
        key = hashlib.sha256(b"\0".join((user.encode(), password.encode(),
                                         hashed or b""))).digest()
        with self._lock:
            if hashed is not None and key in self._known:
                return True
        try:
            ok = bcrypt.checkpw(password.encode(), hashed or _DUMMY_HASH)
        except ValueError:
            ok = False
        if ok and hashed is not None:
            with self._lock:
                if len(self._known) > 1024:
                    self._known.clear()
                self._known.add(key)
            return True
        return False


def load_web_config(path: Path) -> WebConfig:
    """Read and check the file; ConfigError listing every problem with its line."""
    from orchestrator.config.yamlsource import YamlLoadError, YDict, load_yaml

    name = str(path)
    try:
        doc = load_yaml(path, name)
    except YamlLoadError as exc:
        raise ConfigError([exc.problem]) from exc
    problems: list[Problem] = []

    def bad(line: int, message: str) -> None:
        problems.append(Problem(name, line, message))

    if doc is None:
        doc = YDict()
    if not isinstance(doc, YDict):
        raise ConfigError([Problem(name, 1, "a web configuration is a mapping "
                                   "(tls_server_config, basic_auth_users)")])
    for key in doc:
        if key not in _TOP_KEYS:
            bad(doc.line_of(key), f"unknown key {key!r} (known: {', '.join(_TOP_KEYS)})")
    tls = _tls(doc.get("tls_server_config"), doc, path.parent, bad)
    users = _users(doc.get("basic_auth_users"), doc, bad)
    http = doc.get("http_server_config")
    if http is not None and not isinstance(http, YDict):
        bad(doc.line_of("http_server_config"), "http_server_config is a mapping")
    context = None
    if tls is not None and not problems:
        try:
            context = tls.context()
        except (OSError, ssl.SSLError, ValueError) as exc:
            section = doc["tls_server_config"]
            bad(section.line_of("cert_file"), f"cannot use cert_file {tls.cert_file} with "
                f"key_file {tls.key_file}: {getattr(exc, 'strerror', None) or exc}")
    if problems:
        raise ConfigError(problems)
    return WebConfig(path, tls, users, _ssl=context)


def _tls(section: Any, doc: Any, base: Path, bad: Any) -> TlsServerConfig | None:
    from orchestrator.config.yamlsource import YDict

    if section is None:
        return None
    line = doc.line_of("tls_server_config")
    if not isinstance(section, YDict):
        bad(line, "tls_server_config is a mapping (cert_file, key_file)")
        return None
    for key in section:
        if key not in _TLS_KEYS:
            bad(section.line_of(key), f"tls_server_config: unknown key {key!r}")
    files: dict[str, Path | None] = {}
    for key in ("cert_file", "key_file", "client_ca_file"):
        value = section.get(key)
        if value is None or value == "":
            files[key] = None
            if key != "client_ca_file":
                bad(line, f"tls_server_config: {key} is required")
            continue
        if not isinstance(value, str):
            bad(section.line_of(key), f"tls_server_config: {key} is a file path")
            files[key] = None
            continue
        file = base / Path(value).expanduser()
        if not file.is_file():
            bad(section.line_of(key), f"tls_server_config: {key} {file}: no such file")
        files[key] = file
    auth_name = section.get("client_auth_type", "NoClientCert")
    client_auth = CLIENT_AUTH.get(str(auth_name))
    if client_auth is None:
        bad(section.line_of("client_auth_type"), f"tls_server_config: client_auth_type "
            f"{auth_name!r} is not one of {', '.join(CLIENT_AUTH)}")
    elif client_auth is not ssl.CERT_NONE and files.get("client_ca_file") is None:
        bad(section.line_of("client_auth_type"), f"tls_server_config: client_auth_type "
            f"{auth_name} needs client_ca_file")
    versions: dict[str, ssl.TLSVersion | None] = {}
    for key in ("min_version", "max_version"):
        value = section.get(key)
        versions[key] = TLS_VERSIONS.get(str(value)) if value is not None else None
        if value is not None and versions[key] is None:
            bad(section.line_of(key), f"tls_server_config: {key} {value!r} is not one of "
                f"{', '.join(TLS_VERSIONS)}")
    cert, private = files.get("cert_file"), files.get("key_file")
    if cert is None or private is None:
        return None
    return TlsServerConfig(cert, private, files.get("client_ca_file"),
                           client_auth or ssl.CERT_NONE, versions["min_version"],
                           versions["max_version"])


def _users(section: Any, doc: Any, bad: Any) -> dict[str, bytes]:
    from orchestrator.config.yamlsource import YDict

    if section is None:
        return {}
    if not isinstance(section, YDict):
        bad(doc.line_of("basic_auth_users"), "basic_auth_users is a mapping: NAME: "
            "BCRYPT_HASH")
        return {}
    import bcrypt

    users: dict[str, bytes] = {}
    for user, hashed in section.items():
        line = section.line_of(user)
        if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            bad(line, f"basic_auth_users: {user}: not a bcrypt hash ($2y$..., as "
                "`htpasswd -nBC 10 \"\" | tr -d ':'` prints)")
            continue
        if not _BCRYPT_HASH.fullmatch(hashed):
            bad(line, f"basic_auth_users: {user}: not a bcrypt hash: one is $2y$, a cost 04-31, "
                f"$, then 53 characters of salt and digest (60 in all); this one has "
                f"{len(hashed)}")
            continue
        try:  # a malformed hash raises here, at its line, not at the first scrape
            bcrypt.checkpw(b"", hashed.encode())
        except ValueError as exc:
            bad(line, f"basic_auth_users: {user}: not a bcrypt hash: {exc}")
            continue
        users[str(user)] = hashed.encode()
    return users


@dataclass(frozen=True)
class MetricsListen:
    """Where `/metrics` listens and how (the web configuration)."""

    addr: str
    port: int
    web: WebConfig | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.web is not None and self.web.tls is not None else "http"

    def url(self, port: int | None = None) -> str:
        host = f"[{self.addr}]" if ":" in self.addr else self.addr
        return f"{self.scheme}://{host}:{self.port if port is None else port}/metrics"


def parse_listen(text: str) -> tuple[str, int]:
    """`ADDR:PORT` (`[v6]:PORT` for IPv6); ValueError saying what is wrong."""
    try:
        addr, port = split_host_port(text)
    except ValueError as exc:
        raise ValueError(f"{exc} (e.g. 0.0.0.0:9464)") from None
    try:
        ipaddress.ip_address(addr)
    except ValueError:
        if not addr or any(c in addr for c in "[]/ "):
            raise ValueError(f"{text!r}: {addr!r} is not an address or host name") from None
    return addr, port


def metrics_listen(listen: str | None, port: int | None,
                   web_config: Path | None) -> MetricsListen | None:
    """The options `--metrics-listen`, `--metrics-port` and `--web-config` together: None
    when /metrics is not served; ConfigError (exit 2) when they disagree."""
    if listen is None and port is None:
        if web_config is not None:
            raise ConfigError("--web-config needs --metrics-listen ADDR:PORT or "
                              "--metrics-port P: it configures the /metrics server")
        return None
    addr = DEFAULT_ADDR
    if listen is not None:
        try:
            addr, listen_port = parse_listen(listen)
        except ValueError as exc:
            raise ConfigError(f"--metrics-listen: {exc}") from exc
        if port is not None and port != listen_port:
            raise ConfigError(f"--metrics-port {port} and --metrics-listen {listen} name "
                              "different ports: give one, or the same port in both")
        port = listen_port
    assert port is not None
    if not 0 <= port <= 65535:
        raise ConfigError(f"--metrics-port {port} is not a port (0-65535)")
    web = load_web_config(web_config) if web_config is not None else None
    return MetricsListen(addr, port, web)
