"""TLS and mutual TLS between `promo-server serve`, PromoClient and the `promo` CLI.

A throw-away CA made here signs a server certificate for 127.0.0.1 and
localhost and a client certificate; a second CA, trusted by nobody, signs a
stranger's. TLS does not involve the database, so these tests run on SQLite only.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from promo import errors
from promo.cli import cli
from promo.client import PromoClient
from promo_server.app import create_server
from promo_server.config import Settings
from tests.conftest import Running, close_pool
from tests.processes import create_project, free_port, promo_server

EXAMPLE = Path(__file__).parent.parent / "examples" / "promotion.json"
PROMOTION = json.loads(EXAMPLE.read_text())


# Certificates ---------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """PEM files: a CA, what it signed, and a stranger signed by a CA nobody trusts."""

    ca: Path
    server_cert: Path  # for 127.0.0.1 and localhost
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    stranger_cert: Path
    stranger_key: Path
    encrypted_server_key: Path


class _Authority:
    def __init__(self, name: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = self._builder(self.name, self.key.public_key()).add_extension(
            x509.BasicConstraints(ca=True, path_length=None), critical=True
        ).sign(self.key, hashes.SHA256())

    def _builder(
        self, subject: x509.Name, public_key: ec.EllipticCurvePublicKey
    ) -> x509.CertificateBuilder:
        now = datetime.datetime.now(datetime.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
        )

    def issue(
        self, name: str, names: list[x509.GeneralName], usage: x509.ObjectIdentifier
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (
            self._builder(subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return cert, key


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _write_key(
    path: Path,
    key: ec.EllipticCurvePrivateKey,
    encryption: serialization.KeySerializationEncryption | None = None,
) -> Path:
    path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        encryption or serialization.NoEncryption(),
    ))
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca, other = _Authority("promo test CA"), _Authority("nobody's CA")
    server_cert, server_key = ca.issue(
        "localhost",
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        ExtendedKeyUsageOID.SERVER_AUTH,
    )
    client_cert, client_key = ca.issue(
        "shop", [x509.DNSName("shop.example")], ExtendedKeyUsageOID.CLIENT_AUTH
    )
    stranger_cert, stranger_key = other.issue(
        "stranger", [x509.DNSName("stranger.example")], ExtendedKeyUsageOID.CLIENT_AUTH
    )
    return Pki(
        ca=_write_cert(folder / "ca.pem", ca.cert),
        server_cert=_write_cert(folder / "server.pem", server_cert),
        server_key=_write_key(folder / "server.key", server_key),
        client_cert=_write_cert(folder / "client.pem", client_cert),
        client_key=_write_key(folder / "client.key", client_key),
        other_ca=_write_cert(folder / "other-ca.pem", other.cert),
        stranger_cert=_write_cert(folder / "stranger.pem", stranger_cert),
        stranger_key=_write_key(folder / "stranger.key", stranger_key),
        encrypted_server_key=_write_key(
            folder / "encrypted.key", server_key,
            serialization.BestAvailableEncryption(b"secret"),
        ),
    )


# Servers --------------------------------------------------------------------


@dataclass(frozen=True)
class Served:
    port: int
    admin_key: str

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


@contextmanager
def _serving(tmp_path: Path, **tls: str) -> Iterator[Served]:
    """An in-process server with the TLS settings given, and a project on it."""
    db_url = f"sqlite:///{tmp_path}/promo.db"
    settings = Settings(database_url=db_url, listen="127.0.0.1:0", **tls)
    server, port = create_server(settings.listen, db_url, settings)
    server.start()
    try:
        project = Running(f"127.0.0.1:{port}", db_url, server).new_project()
        yield Served(port, project.admin_key)
    finally:
        server.stop(None).wait()
        close_pool()


@pytest.fixture
def tls_server(tmp_path: Path, pki: Pki) -> Iterator[Served]:
    with _serving(tmp_path, tls_cert=str(pki.server_cert), tls_key=str(pki.server_key)) as served:
        yield served


@pytest.fixture
def mtls_server(tmp_path: Path, pki: Pki) -> Iterator[Served]:
    with _serving(
        tmp_path,
        tls_cert=str(pki.server_cert),
        tls_key=str(pki.server_key),
        tls_client_ca=str(pki.ca),
    ) as served:
        yield served


@pytest.fixture
def plain_server(tmp_path: Path) -> Iterator[Served]:
    with _serving(tmp_path) as served:
        yield served


@pytest.fixture(autouse=True)
def _no_tls_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PROMO_TLS", "PROMO_TLS_CA", "PROMO_CLIENT_CERT", "PROMO_CLIENT_KEY",
                 "PROMO_TLS_CERT", "PROMO_TLS_KEY", "PROMO_TLS_CLIENT_CA"):
        monkeypatch.delenv(name, raising=False)


def _round_trip(client: PromoClient) -> None:
    assert client.create_promotion(PROMOTION).external_id == "summer-sale"
    assert client.get_promotion("summer-sale").name["en-US"] == "Summer sale"


# PromoClient ----------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_client_trusting_the_ca_calls_a_tls_server(
    tls_server: Served, pki: Pki, host: str
) -> None:
    with PromoClient(f"{host}:{tls_server.port}", tls_server.admin_key, ca=pki.ca) as client:
        assert client.tls
        _round_trip(client)


def test_promo_tls_ca_in_the_environment_turns_tls_on(
    tls_server: Served, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMO_TLS_CA", str(pki.ca))

    with PromoClient(tls_server.target, tls_server.admin_key) as client:
        assert client.tls
        _round_trip(client)


def test_a_plaintext_client_to_a_tls_server_is_unavailable(tls_server: Served) -> None:
    with PromoClient(tls_server.target, tls_server.admin_key, timeout=10) as client:
        assert not client.tls
        with pytest.raises(errors.Unavailable):
            client.create_promotion(PROMOTION)


def test_a_tls_client_to_a_plaintext_server_is_unavailable(plain_server: Served, pki: Pki) -> None:
    with (
        PromoClient(plain_server.target, plain_server.admin_key, ca=pki.ca, timeout=10) as client,
        pytest.raises(errors.Unavailable),
    ):
        client.create_promotion(PROMOTION)


@pytest.mark.parametrize("trust", ["system roots", "another CA"])
def test_a_client_that_does_not_trust_the_servers_ca_is_unavailable(
    tls_server: Served, pki: Pki, trust: str
) -> None:
    ca = pki.other_ca if trust == "another CA" else None
    with PromoClient(
        tls_server.target, tls_server.admin_key, tls=True, ca=ca, timeout=10
    ) as client, pytest.raises(errors.Unavailable):
        client.create_promotion(PROMOTION)


def test_mutual_tls_refuses_a_client_without_a_certificate(mtls_server: Served, pki: Pki) -> None:
    with (
        PromoClient(mtls_server.target, mtls_server.admin_key, ca=pki.ca, timeout=10) as client,
        pytest.raises(errors.Unavailable),
    ):
        client.create_promotion(PROMOTION)


def test_mutual_tls_refuses_a_certificate_another_ca_signed(mtls_server: Served, pki: Pki) -> None:
    with PromoClient(
        mtls_server.target, mtls_server.admin_key, ca=pki.ca,
        client_cert=pki.stranger_cert, client_key=pki.stranger_key, timeout=10,
    ) as client, pytest.raises(errors.Unavailable):
        client.create_promotion(PROMOTION)


def test_mutual_tls_accepts_a_certificate_the_ca_signed(mtls_server: Served, pki: Pki) -> None:
    with PromoClient(
        mtls_server.target, mtls_server.admin_key, ca=pki.ca,
        client_cert=pki.client_cert, client_key=pki.client_key,
    ) as client:
        _round_trip(client)


def test_mutual_tls_takes_the_client_certificate_from_the_environment(
    mtls_server: Served, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMO_TLS_CA", str(pki.ca))
    monkeypatch.setenv("PROMO_CLIENT_CERT", str(pki.client_cert))
    monkeypatch.setenv("PROMO_CLIENT_KEY", str(pki.client_key))

    with PromoClient(mtls_server.target, mtls_server.admin_key) as client:
        _round_trip(client)


def test_an_api_key_is_still_needed_over_mutual_tls(mtls_server: Served, pki: Pki) -> None:
    with PromoClient(
        mtls_server.target, "", ca=pki.ca, client_cert=pki.client_cert, client_key=pki.client_key,
    ) as client, pytest.raises(errors.Unauthenticated):
        client.get_promotion("summer-sale")


def test_a_client_certificate_without_its_key_is_refused(pki: Pki) -> None:
    with pytest.raises(ValueError, match="client certificate and its key go together"):
        PromoClient("127.0.0.1:1", "k", ca=pki.ca, client_cert=pki.client_cert)


def test_a_ca_file_without_certificates_is_refused(pki: Pki) -> None:
    with pytest.raises(ValueError, match=f"CA file {pki.client_key}: no PEM certificate"):
        PromoClient("127.0.0.1:1", "k", ca=pki.client_key)


@pytest.mark.parametrize(
    ("cert", "key", "expected"),
    [
        ("client_cert", "stranger_key", "not a PEM certificate chain and its private key"),
        ("client_key", "client_key", "not a PEM certificate chain and its private key"),
        ("server_cert", "encrypted_server_key", "is encrypted"),
    ],
)
def test_a_client_certificate_and_key_that_cannot_work_are_refused(
    pki: Pki, cert: str, key: str, expected: str
) -> None:
    with pytest.raises(ValueError, match=expected):
        PromoClient(
            "127.0.0.1:1", "k", client_cert=getattr(pki, cert), client_key=getattr(pki, key)
        )


def test_promo_tls_must_be_a_boolean(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMO_TLS", "maybe")

    with pytest.raises(ValueError, match="PROMO_TLS must be"):
        PromoClient("127.0.0.1:1", "k")


# The CLI --------------------------------------------------------------------


def _promo(served: Served, *args: str, **env: str) -> Result:
    environment = {"PROMO_TARGET": served.target, "PROMO_API_KEY": served.admin_key, **env}
    return CliRunner().invoke(cli, list(args), env=environment, catch_exceptions=False)


def test_cli_calls_a_tls_server_with_ca(tls_server: Served, pki: Pki) -> None:
    created = _promo(tls_server, "--ca", str(pki.ca),
                     "promotions", "create", "--file", str(EXAMPLE))
    assert created.exit_code == 0, created.output

    shown = _promo(tls_server, "--json", "promotions", "get", "summer-sale",
                   PROMO_TLS_CA=str(pki.ca))
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["externalId"] == "summer-sale"


@pytest.mark.parametrize("args", [[], ["--tls"]], ids=["plaintext", "system roots"])
def test_cli_cannot_reach_a_tls_server_without_trusting_its_ca(
    tls_server: Served, args: list[str]
) -> None:
    result = _promo(tls_server, *args, "promotions", "create", "--file", str(EXAMPLE))

    assert result.exit_code == 1
    assert result.stderr.startswith("error: UNAVAILABLE")


def test_cli_speaks_mutual_tls(mtls_server: Served, pki: Pki) -> None:
    created = _promo(mtls_server, "--ca", str(pki.ca), "--client-cert", str(pki.client_cert),
                     "--client-key", str(pki.client_key),
                     "promotions", "create", "--file", str(EXAMPLE))
    assert created.exit_code == 0, created.output

    by_env = {"PROMO_TLS_CA": str(pki.ca), "PROMO_CLIENT_CERT": str(pki.client_cert),
              "PROMO_CLIENT_KEY": str(pki.client_key)}
    assert _promo(mtls_server, "promotions", "get", "summer-sale", **by_env).exit_code == 0

    refused = _promo(mtls_server, "--ca", str(pki.ca),
                     "promotions", "create", "--file", str(EXAMPLE))
    assert refused.exit_code == 1
    assert refused.stderr.startswith("error: UNAVAILABLE")


def test_cli_refuses_tls_options_that_cannot_work(tls_server: Served, pki: Pki) -> None:
    alone = _promo(tls_server, "--client-cert", str(pki.client_cert), "promotions", "list")
    assert alone.exit_code == 1
    assert alone.stderr.startswith("error: --client-cert and --client-key")

    not_a_ca = _promo(tls_server, "--ca", str(pki.client_key), "promotions", "list")
    assert not_a_ca.exit_code == 1
    assert not_a_ca.stderr.strip() == f"error: CA file {pki.client_key}: no PEM certificate in it"

    missing = _promo(tls_server, "--ca", str(pki.ca.with_name("missing.pem")), "promotions", "list")
    assert missing.exit_code == 2
    assert "--ca" in missing.stderr and "does not exist" in missing.stderr


# promo-server serve ---------------------------------------------------------


def _credentials(pki: Pki) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=pki.ca.read_bytes(),
        private_key=pki.client_key.read_bytes(),
        certificate_chain=pki.client_cert.read_bytes(),
    )


@pytest.mark.parametrize("given_by", ["flags", "environment"])
def test_promo_server_serves_mutual_tls(tmp_path: Path, pki: Pki, given_by: str) -> None:
    db_url = f"sqlite:///{tmp_path}/promo.db"
    key = create_project(db_url)
    env = {**os.environ, "PROMO_DATABASE_URL": db_url}
    args: list[str] = []
    if given_by == "flags":
        args = ["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key),
                "--tls-client-ca", str(pki.ca)]
    else:
        env.update({"PROMO_TLS_CERT": str(pki.server_cert), "PROMO_TLS_KEY": str(pki.server_key),
                    "PROMO_TLS_CLIENT_CA": str(pki.ca)})
    port = free_port()
    server = subprocess.Popen(promo_server("serve", "--listen", f"127.0.0.1:{port}", *args),
                              env=env, stderr=subprocess.PIPE, text=True)
    served = Served(port, key)
    try:
        with grpc.secure_channel(served.target, _credentials(pki)) as channel:
            grpc.channel_ready_future(channel).result(timeout=20)
        created = _promo(served, "--ca", str(pki.ca), "--client-cert", str(pki.client_cert),
                         "--client-key", str(pki.client_key),
                         "promotions", "create", "--file", str(EXAMPLE))
        assert created.exit_code == 0, created.output
        with (
            PromoClient(served.target, key, timeout=10) as plaintext,
            pytest.raises(errors.Unavailable),
        ):
            plaintext.create_promotion(PROMOTION)
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=20) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    log = server.stderr.read() if server.stderr else ""
    assert f"'tls_key': '{pki.server_key}'" in log
    assert f"'tls_client_ca': '{pki.ca}'" in log
    assert "PRIVATE KEY" not in log and "CERTIFICATE" not in log


_BAD_STARTS = {
    "cert without key": (["--tls-cert", "{server_cert}"],
                         "--tls-cert (PROMO_TLS_CERT) is set without --tls-key (PROMO_TLS_KEY)"),
    "key without cert": (["--tls-key", "{server_key}"],
                         "--tls-key (PROMO_TLS_KEY) is set without --tls-cert (PROMO_TLS_CERT)"),
    "client CA without cert": (["--tls-client-ca", "{ca}"],
                               "--tls-client-ca (PROMO_TLS_CLIENT_CA) needs --tls-cert"),
    "unreadable cert": (["--tls-cert", "{folder}/missing.pem", "--tls-key", "{server_key}"],
                        "--tls-cert (PROMO_TLS_CERT): cannot read {folder}/missing.pem:"),
    "cert is not a certificate": (["--tls-cert", "{server_key}", "--tls-key", "{server_key}"],
                                  "--tls-cert (PROMO_TLS_CERT): no PEM certificate in"),
    "key of another certificate": (["--tls-cert", "{server_cert}", "--tls-key", "{client_key}"],
                                   "--tls-key (PROMO_TLS_KEY): {client_key} is not the key of"),
    "key is not a key": (["--tls-cert", "{server_cert}", "--tls-key", "{server_cert}"],
                         "--tls-key (PROMO_TLS_KEY): {server_cert} holds no PEM private key"),
    "encrypted key": (["--tls-cert", "{server_cert}", "--tls-key", "{encrypted_server_key}"],
                      "--tls-key (PROMO_TLS_KEY): {encrypted_server_key} is encrypted"),
    "client CA is not a certificate": (
        ["--tls-cert", "{server_cert}", "--tls-key", "{server_key}",
         "--tls-client-ca", "{client_key}"],
        "--tls-client-ca (PROMO_TLS_CLIENT_CA): no PEM certificate in {client_key}",
    ),
    "several workers, cert without key": (
        ["--workers", "2", "--tls-cert", "{server_cert}"],
        "--tls-cert (PROMO_TLS_CERT) is set without --tls-key",
    ),
}


@pytest.mark.parametrize("case", list(_BAD_STARTS))
def test_promo_server_refuses_tls_settings_that_cannot_work(
    tmp_path: Path, pki: Pki, case: str
) -> None:
    args, expected = _BAD_STARTS[case]
    paths = {name: str(getattr(pki, name)) for name in Pki.__dataclass_fields__}
    paths["folder"] = str(pki.ca.parent)
    database = tmp_path / "promo.db"

    started = subprocess.run(
        promo_server("serve", "--db", f"sqlite:///{database}", "--listen", "127.0.0.1:0",
                     *(arg.format(**paths) for arg in args)),
        capture_output=True, text=True, timeout=60,
    )

    assert started.returncode == 2
    assert started.stderr.startswith("error: " + expected.format(**paths)), started.stderr
    assert "serving" not in started.stderr
    assert not database.exists()  # refused before it touched anything


def test_promo_server_reads_the_tls_settings_from_the_environment(tmp_path: Path, pki: Pki) -> None:
    database = tmp_path / "promo.db"
    env = {**os.environ, "PROMO_DATABASE_URL": f"sqlite:///{database}",
           "PROMO_TLS_CERT": str(pki.server_cert)}

    started = subprocess.run(promo_server("serve", "--listen", "127.0.0.1:0"), env=env,
                             capture_output=True, text=True, timeout=60)

    assert started.returncode == 2
    assert started.stderr.startswith(
        "error: --tls-cert (PROMO_TLS_CERT) is set without --tls-key (PROMO_TLS_KEY)"
    )
    assert not database.exists()
