"""/metrics for a Prometheus on another machine (SPEC section 7): `--metrics-listen` on a
non-loopback address, `--web-config` with TLS and bcrypt basic auth, as Prometheus's own
exporters read it.

A real `migrate watch` serves; a real Prometheus (tests/support/prom.py) scrapes it over
https with basic auth at the machine's own interface address (not 127.0.0.1). Wrong or
missing credentials get 401; plain HTTP to the TLS listener gets no answer. The
certificates are made here with the `cryptography` package; the hash with `bcrypt`.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.projects import Proj, make_project
from tests.support.prom import free_port, prometheus_with, query
from tests.support.real_parts import missing

USER, PASSWORD = "prometheus", "s3cret-scrape"
MIGRATION = "name: remote\ninventory: inventory/hosts.yml\npoll_interval: 1s\n"


def own_address() -> str:
    """An IPv4 address of this machine that is not loopback (fails under CI without one)."""
    out = subprocess.run(["ip", "-j", "-4", "addr"], capture_output=True, text=True)
    for link in json.loads(out.stdout or "[]"):
        for info in link.get("addr_info", []):
            addr = info.get("local", "")
            if addr and not ipaddress.ip_address(addr).is_loopback:
                return str(addr)
    missing("this machine has no non-loopback IPv4 address")


def make_certs(out: Path, ip: str) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for `ip` signed by it: (ca.pem, server.crt, server.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "migrate test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ip)]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    out.mkdir(parents=True, exist_ok=True)
    ca_pem, crt, pem = out / "ca.pem", out / "server.crt", out / "server.key"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    return ca_pem, crt, pem


def web_config(path: Path, users: dict[str, str]) -> Path:
    """The exporters' web config: TLS with the files beside it (relative paths), users."""
    import bcrypt

    lines = ["tls_server_config:", "  cert_file: server.crt", "  key_file: server.key",
             "basic_auth_users:"]
    lines += [f"  {u}: {bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode()}"
              for u, p in users.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Served:
    proj: Proj
    addr: str
    port: int
    ca: Path
    tmp: Path

    @property
    def url(self) -> str:
        return f"https://{self.addr}:{self.port}/metrics"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`migrate watch --metrics-listen OWN_IP:PORT --web-config web.yml`, running."""
    tmp = tmp_path_factory.mktemp("tls")
    addr = own_address()
    proj = make_project(tmp, migration=MIGRATION, hosts=("main",))
    proj.phase(1, "one", "phase: 1\nsteps:\n  - id: soak\n    wait: 1s\n")
    ca, _, _ = make_certs(tmp / "pki", addr)
    config = web_config(tmp / "pki" / "web.yml", {USER: PASSWORD})
    port = free_port()
    proc = proj.spawn("watch", "--host", "main", "--for", "120s",
                      "--metrics-listen", f"{addr}:{port}", "--web-config", str(config))
    try:
        context = ssl.create_default_context(cafile=str(ca))
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                with socket.create_connection((addr, port), timeout=1) as raw, \
                        context.wrap_socket(raw, server_hostname=addr):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the TLS listener never came up"
                time.sleep(0.2)
        yield Served(proj, addr, port, ca, tmp)
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def get(served: Served, auth: tuple[str, str] | None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(served.url)
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    context = ssl.create_default_context(cafile=str(served.ca))
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.mark.integration
def test_a_real_prometheus_scrapes_watch_over_tls_with_basic_auth_off_loopback(
        served: Served) -> None:
    scrape = (f"  - job_name: migrate\n    scheme: https\n"
              f"    tls_config: {{ca_file: '{served.ca}'}}\n"
              f"    basic_auth: {{username: {USER}, password: '{PASSWORD}'}}\n"
              f"    static_configs: [{{targets: ['{served.addr}:{served.port}']}}]\n")
    with prometheus_with(served.tmp / "prom", scrape,
                         'migrate_watch_active{migration="remote"} == 1') as prom:
        up = query(prom, 'up{job="migrate"}')
        assert [r["value"][1] for r in up] == ["1"]  # type: ignore[index]
        states = query(prom, 'migrate_phase_state{migration="remote",host="main"}')
        assert states, "the phase state series were not scraped"


@pytest.mark.integration
def test_the_listener_is_where_metrics_listen_says_not_on_loopback(served: Served) -> None:
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", served.port), timeout=2).close()


@pytest.mark.integration
@pytest.mark.parametrize("auth", [None, (USER, "wrong"), ("nobody", PASSWORD), (USER, "")],
                         ids=["none", "wrong-password", "unknown-user", "empty-password"])
def test_wrong_or_missing_credentials_get_401(served: Served,
                                              auth: tuple[str, str] | None) -> None:
    status, headers, body = get(served, auth)
    assert status == 401
    assert headers.get("WWW-Authenticate", "").startswith("Basic")
    assert b"migrate_" not in body


@pytest.mark.integration
def test_the_right_credentials_get_the_metrics(served: Served) -> None:
    status, _, body = get(served, (USER, PASSWORD))
    assert status == 200
    assert b'migrate_watch_active{migration="remote"}' in body


@pytest.mark.integration
def test_plain_http_to_the_tls_listener_gets_nothing(served: Served) -> None:
    with socket.create_connection((served.addr, served.port), timeout=10) as sock:
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        sock.sendall(f"GET /metrics HTTP/1.1\r\nHost: {served.addr}\r\n"
                     f"Authorization: Basic {token}\r\n\r\n".encode())
        got = b""
        try:
            while chunk := sock.recv(4096):
                got += chunk
        except ConnectionResetError:
            pass
    assert b"HTTP/" not in got and b"migrate_" not in got


# --- options and files that are wrong: exit 2, one line each with FILE:LINE -------------------

@pytest.fixture
def plain(tmp_path: Path) -> Proj:
    proj = make_project(tmp_path, migration=MIGRATION, hosts=("main",))
    proj.phase(1, "one", "phase: 1\nsteps:\n  - id: soak\n    wait: 1s\n")
    make_certs(tmp_path / "pki", "127.0.0.1")
    return proj


# a real bcrypt hash of "x" (cost 4) with its digest's last character cut: 59 characters
_DIGEST_CUT = "$2b$04$vsbY2dOK7XdhtI7TvGQQC.llotF/zfF6pjb2tjKdz/8OdA4MCX.m"


def refused(proj: Proj, *args: str) -> str:
    res = proj.migrate("watch", "--host", "main", "--once", *args, timeout=60)
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr
    return res.stderr


@pytest.mark.parametrize("body, line, words", [
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth: {}\n",
     4, "unknown key 'basic_auth'"),
    ("basic_auth_users:\n  alice: secret\n", 2, "not a bcrypt hash"),
    ("basic_auth_users:\n  alice: $2y$10$short\n", 2, "not a bcrypt hash"),
    ("basic_auth_users:\n  bob: $2y$10$" + "abcdefghijklmnopqrstuv\n", 2,
     "bob: not a bcrypt hash: one is $2y$, a cost 04-31, $, then 53 characters of salt "
     "and digest (60 in all); this one has 29"),
    ("basic_auth_users:\n  carol: " + _DIGEST_CUT + "\n", 2,
     "carol: not a bcrypt hash: one is $2y$"),
    ("tls_server_config:\n  cert_file: nothere.crt\n  key_file: server.key\n", 2,
     "no such file"),
    ("tls_server_config:\n  cert_file: server.crt\n", 1, "key_file is required"),
    ("tls_server_config:\n  cert_file: ca.pem\n  key_file: server.key\n", 2,
     "cannot use cert_file"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
     "  min_version: TLS9\n", 4, "min_version 'TLS9'"),
    ("tls_server_config: [\n", 2, "malformed YAML"),
], ids=["unknown-key", "plain-password", "short-hash", "salt-without-digest", "digest-cut", "missing-cert", "no-key",
        "cert-key-mismatch", "bad-version", "broken-yaml"])
def test_a_bad_web_config_is_exit_2_at_its_line(plain: Proj, tmp_path: Path, body: str,
                                               line: int, words: str) -> None:
    config = tmp_path / "pki" / "web.yml"
    config.write_text(body)
    err = refused(plain, "--metrics-port", str(free_port()), "--web-config", str(config))
    assert f"{config}:{line}:" in err and words in err, err


def test_metrics_port_and_listen_must_agree(plain: Proj) -> None:
    err = refused(plain, "--metrics-port", "9464", "--metrics-listen", "0.0.0.0:9465")
    assert "9464" in err and "9465" in err


@pytest.mark.parametrize("listen", ["0.0.0.0", "0.0.0.0:http", "[::1:9464", ":99999"])
def test_a_listen_that_is_not_addr_port_is_exit_2(plain: Proj, listen: str) -> None:
    assert "--metrics-listen" in refused(plain, "--metrics-listen", listen)


def test_web_config_needs_a_listener(plain: Proj, tmp_path: Path) -> None:
    config = web_config(tmp_path / "pki" / "web.yml", {USER: PASSWORD})
    assert "--web-config needs" in refused(plain, "--web-config", str(config))


def test_metrics_listen_alone_serves_there(plain: Proj) -> None:
    port = free_port()
    proc = plain.spawn("watch", "--host", "main", "--for", "30s", "--metrics-listen",
                       f"127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                            timeout=2) as resp:
                    assert b"migrate_watch_active" in resp.read()
                    break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
