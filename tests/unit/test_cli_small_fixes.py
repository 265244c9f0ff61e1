"""The small fixes of issue 26: a closed stdout ends a command quietly (exit 141), a kind the tenant's target does
not take and an unknown tenant are one clear line, validation errors never quote a value of the document, counts
read "1 document", and `make up` runs the Procfile with the venv's commands on PATH."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import fakeredis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import AfterValidator, BaseModel, ValidationError

from schemas import DocumentKind, Target
from schemas.fortnox import FortnoxArticle
from schemas.targets import check_supported, kind_refusal
from schemas.validation import (
    ECHO_MASK,
    DocumentError,
    _document_error,
    validate_action,
    validate_document,
    validate_document_json,
)
from tests.unit.cli_run import fake_redis_behind_cli, run
from tests.unit.test_schemas_fortnox import SALES, SPEC_ARTICLE, realistic
from worker.cli import commands as cli
from worker.cli.console import EXIT_OUTPUT_CLOSED, EXIT_USAGE, plural
from worker.errors import ConfigurationError
from worker.settings import SHOWN_TENANTS, Settings, get_settings
from worker.store.results import ResultsStore

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


@pytest.fixture(autouse=True)
def _fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("ERPSYNC_KEY_PREFIX", "smallfix")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def r(monkeypatch: pytest.MonkeyPatch) -> fakeredis.FakeRedis:
    return fake_redis_behind_cli(monkeypatch)


def make_jobs(client: fakeredis.FakeRedis, n: int) -> None:
    store = ResultsStore(client, get_settings())
    for i in range(n):
        store.create_job(
            {"job_id": f"job-{i}", "tenant": "demo", "target": "softone", "kind": "customer_invoice", "source": "t"},
            ["{}"],
            [f"job-{i}-0"],
        )


# ----- a closed stdout


class ClosedPipe:
    """A stdout whose reader went away: every write fails as a pipe's does."""

    encoding = "utf-8"

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        raise OSError("not a file")


@pytest.mark.parametrize("argv", [["jobs", "--json"], ["jobs"]], ids=["print", "rich"])
def test_a_closed_stdout_ends_the_command_quietly_with_141(
    r: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    make_jobs(r, 3)
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    code = cli.main(argv)
    assert code == EXIT_OUTPUT_CLOSED == 141
    assert capsys.readouterr().err == ""


def _redis_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.mark.skipif(not _redis_answers(), reason="needs the Redis on 127.0.0.1:6379")
@pytest.mark.parametrize("argv", [["jobs", "--json"], ["jobs"]], ids=["print", "rich"])
def test_erpsync_into_a_pipe_nobody_reads_says_nothing_and_exits_141(argv: list[str]) -> None:
    """`erpsync jobs --json | head` for real: a process whose stdout is a pipe with no reader left."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # before the process starts: its first write fails, as after `head` has exited
    prefix = f"smallfix-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERPSYNC_")}
    env.update(ERPSYNC_KEY_PREFIX=prefix, ERPSYNC_QUEUE=prefix, ERPSYNC_ARCHIVE_URL="off")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "worker.cli", *argv],
            stdout=write_end,
            stderr=subprocess.PIPE,
            env=env,
            cwd=ROOT,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)
    assert done.stderr.decode() == ""  # no traceback, no "Exception ignored" at exit
    assert done.returncode == EXIT_OUTPUT_CLOSED


# ----- a kind the tenant's target does not take; an unknown tenant


def test_a_kind_the_tenants_target_does_not_take_is_one_line(
    r: fakeredis.FakeRedis, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "articles.jsonl"
    path.write_text('{"ArticleNumber": "A-1", "Description": "x"}\n')
    code, out, err = run(capsys, "submit", str(path), "--kind", "article", "--tenant", "demo")
    assert code == EXIT_USAGE and out == ""
    assert (
        err == "error: tenant 'demo' is at SoftOne GO, which takes customer_invoice and order; article is for Fortnox\n"
    )
    assert r.keys("*") == []  # refused before anything is stored


def test_kind_refusals_name_what_the_target_takes_and_where_the_kind_goes() -> None:
    assert kind_refusal(Target.SOFTONE, DocumentKind.ORDER) is None
    assert kind_refusal("invoiceservice", "order") == "takes customer_invoice; order is for SoftOne GO or Fortnox"
    assert kind_refusal("softone", "receipt") is None  # no kind at all: the envelope says so
    with pytest.raises(ValueError, match=r"^target softone does not take offer: SoftOne GO takes customer_invoice"):
        check_supported("softone", "offer")


def tenants_file(tmp_path: Path, names: list[str]) -> Path:
    path = tmp_path / "tenants.json"
    entries = [{"name": n, "company_api_key": f"{n}-company-key", "connect_api_key": f"{n}-connect-key"} for n in names]
    path.write_text(json.dumps({"tenants": entries}), encoding="utf-8")
    return path


def test_an_unknown_tenant_lists_the_configured_ones(
    r: fakeredis.FakeRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ERPSYNC_TENANTS_FILE", str(tenants_file(tmp_path, ["beta", "acme"])))
    monkeypatch.setenv("ERPSYNC_DEMO_TENANT", "false")
    path = tmp_path / "one.jsonl"
    path.write_text("{}\n")
    code, _, err = run(capsys, "submit", str(path), "--tenant", "acem")
    assert code == EXIT_USAGE
    assert err == "error: unknown tenant 'acem' (did you mean 'acme'?); configured: acme, beta (ERPSYNC_TENANTS_FILE)\n"


def test_an_unknown_tenant_among_many_names_a_few_and_counts_the_rest(tmp_path: Path) -> None:
    names = [f"shop{i:02d}" for i in range(SHOWN_TENANTS + 5)]
    settings = Settings(tenants_file=tenants_file(tmp_path, names), demo_tenant=False)
    with pytest.raises(ConfigurationError) as info:
        settings.tenant("zzz")
    assert str(info.value) == (
        f"unknown tenant 'zzz'; configured: {', '.join(names[:SHOWN_TENANTS])} and 5 more (ERPSYNC_TENANTS_FILE)"
    )
    with pytest.raises(ConfigurationError, match=r"^unknown tenant 'x': no tenant is configured"):
        Settings(demo_tenant=False).tenant("x")


# ----- validation errors quote no value


def _bases() -> dict[tuple[Target, DocumentKind], dict[str, Any]]:
    """A valid document of every (target, kind): a secret put anywhere in it reaches every check, the business
    rules of whole documents included."""
    bases = {
        (Target.SOFTONE, DocumentKind.CUSTOMER_INVOICE): json.loads((EXAMPLES / "spec-invoice.json").read_text())[0],
        (Target.SOFTONE, DocumentKind.ORDER): json.loads((EXAMPLES / "spec-order.json").read_text())[0],
        (Target.INVOICE_SERVICE, DocumentKind.CUSTOMER_INVOICE): json.loads(
            (EXAMPLES / "spec-service-invoice.json").read_text()
        ),
        (Target.FORTNOX, DocumentKind.ARTICLE): realistic(FortnoxArticle, SPEC_ARTICLE),
    }
    kinds = {"InvoiceRows": DocumentKind.CUSTOMER_INVOICE, "OrderRows": DocumentKind.ORDER}
    for model, example, rows in SALES:
        bases[Target.FORTNOX, kinds.get(rows, DocumentKind.OFFER)] = realistic(model, example)
    return bases


BASES = _bases()


def _paths(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    if path:
        yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, (*path, i))


PLACES = [(doc_type, path) for doc_type, base in BASES.items() for path in _paths(base)]


def _with(doc: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(doc)
    parent: Any = changed
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    return changed


SECRETS = st.one_of(
    # An API key or token: letters and digits mixed, as no word of a message is.
    st.from_regex(r"[A-Za-z0-9_-]{4,12}[0-9][A-Za-z][A-Za-z0-9_-]{6,20}", fullmatch=True),
    st.from_regex(r"[1-9][0-9]{9,15}", fullmatch=True),  # a number: passes as an amount, reaches the sums
    st.from_regex(r"[A-Za-z0-9]{8,16}@[a-z]{4,8}\.[a-z]{2,4}", fullmatch=True),
)


def _shapes(secret: str) -> st.SearchStrategy[Any]:
    forms: list[Any] = [secret, f" {secret} ", [secret], {"Value": secret}, f"000{secret}"]
    if secret.isdigit():
        forms += [int(secret), float(f"{secret[:-2]}.{secret[-2:]}")]
    return st.sampled_from(forms)


def _leaks(errors: DocumentError, secret: str) -> list[str]:
    digits = secret.lstrip("0") or secret
    return [
        f"{e.field}: {e.reason}" for e in errors.errors if secret in e.reason or digits in e.reason or secret in e.field
    ]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(place=st.sampled_from(PLACES), data=st.data(), secret=SECRETS)
def test_a_secret_anywhere_in_a_document_never_appears_in_its_errors(
    place: tuple[tuple[Target, DocumentKind], tuple[str | int, ...]], data: st.DataObject, secret: str
) -> None:
    (target, kind), path = place
    value = data.draw(_shapes(secret))
    doc = _with(BASES[target, kind], path, value)
    for result in (
        validate_document(kind, doc, target, max_rows=5000),
        validate_document_json(kind, json.dumps(doc), target, max_rows=5000),
    ):
        if isinstance(result, DocumentError):
            assert _leaks(result, secret) == []
            assert secret not in json.dumps([e.as_dict() for e in result.errors])


@settings(max_examples=100, deadline=None)
@given(field=st.sampled_from(["ExternalId", "Action", "ResultExternalId", "Other"]), secret=SECRETS)
def test_a_secret_in_an_action_never_appears_in_its_errors(field: str, secret: str) -> None:
    raw = {"ExternalId": "O-1", "Action": "createinvoice", field: secret}
    result = validate_action(DocumentKind.ORDER, json.dumps(raw), Target.SOFTONE)
    if isinstance(result, DocumentError):
        assert _leaks(result, secret) == []


def test_a_message_that_quotes_its_input_has_the_input_cut_out() -> None:
    """The last defence, for a message of pydantic's or a future check that quotes what was sent."""

    def echo(value: str) -> str:
        raise ValueError(f"{value!r} is not one of ours")

    class Doc(BaseModel):
        code: Annotated[str, AfterValidator(echo)]

    with pytest.raises(ValidationError) as caught:
        Doc.model_validate({"code": "sk_live_4eC39HqLyjWDarjtT1zdp7dc"})
    assert _document_error(caught.value).summary() == f"code: '{ECHO_MASK}' is not one of ours"


def test_the_checks_the_old_messages_quoted_values_in_now_name_only_the_rule() -> None:
    """The messages that quoted what was sent, one of each (issue 26); the property test above covers the rest."""
    secret = "Zq9sEcReTxY7wK3q"
    base = BASES[Target.INVOICE_SERVICE, DocumentKind.CUSTOMER_INVOICE]
    cases = [
        (("currency", "baseCurrency"), secret, "must be a currency code: three upper-case letters, e.g. SEK"),
        (("debtor", "invoiceAddress", "countryCode"), secret, "must be an ISO 3166-1 alpha-2 country code"),
        (("debtor", "invoiceAddress", "zip"), secret, "must be a Swedish postcode"),
        (("dates", "invoiceDate"), "2026-02-31", "must be a calendar date (YYYY-MM-DD)"),
        (("totals", "totalToPay"), 987654321, "is not total + totalRoundOff - taxReduction"),
        (("articleRows", 0, "quantity"), secret, "must be a quantity"),
    ]
    for path, value, reason in cases:
        errors = validate_document(DocumentKind.CUSTOMER_INVOICE, _with(base, path, value), Target.INVOICE_SERVICE)
        assert isinstance(errors, DocumentError)
        found = {e.field: e.reason for e in errors.errors}
        field = re.sub(r"\.(\d+)", r"[\1]", ".".join(map(str, path)))
        assert reason in found[field], found
        assert str(value) not in errors.summary()


# ----- plurals


def test_plural() -> None:
    assert [plural(n, "document") for n in (0, 1, 2, 1500)] == [
        "0 documents",
        "1 document",
        "2 documents",
        "1500 documents",
    ]
    assert plural(1, "entry", "entries") == "1 entry" and plural(3, "entry", "entries") == "3 entries"


def test_one_job_is_one_job(r: fakeredis.FakeRedis, capsys: pytest.CaptureFixture[str]) -> None:
    make_jobs(r, 1)
    code, out, _ = run(capsys, "jobs")
    assert code == 0 and "1 job, newest first" in out and "1 jobs" not in out


# ----- make up


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_up_runs_honcho_from_the_venv_with_its_bin_first_on_path() -> None:
    # Not as a sub-make of `make test` (CI), which would print its directory around the commands.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", "up", "PROCS=worker sandbox"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
    )
    line = done.stdout.strip().splitlines()[-1]
    assert line == f'PATH="{ROOT}/.venv/bin:$PATH" .venv/bin/honcho start worker sandbox'


def test_every_procfile_command_is_a_command_of_the_venv() -> None:
    """What `make up` puts first on PATH is enough: each process starts a program the venv installs."""
    venv_bin = Path(sys.executable).parent
    programs = {
        line.split(":", 1)[0]: line.split(":", 1)[1].split()[0]
        for line in (ROOT / "Procfile").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {"worker", "sender", "sandbox"} <= programs.keys()
    assert {name: prog for name, prog in programs.items() if not (venv_bin / prog).exists()} == {}
