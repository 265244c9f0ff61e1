"""Configuration of the sandbox ERP: tenants, API keys, known customers, timings, numbering.

The default configuration has one demo tenant per API: SoftOne GO (``demo-company-key`` /
``demo-connect-key``, company 1592 "Demo AB"), Fortnox (client ``demo-fortnox-client`` /
``demo-fortnox-secret``, refresh token ``demo-fortnox-refresh``, TenantId ``demo-fortnox-tenant``,
company 8051 "Demo Fortnox AB", EasyVat on) and the invoice service (Bearer
``demo-invoice-service-token``, client 100123 "Quiddly Test"). All three share a customer
register that knows EVERY all-digit customer number
("013", "3879", "1001", "99999", ...): the numbers that appear in the SoftOne GO specs have
their names from the specs, any other all-digit number gets a generated name ("Kund 99999").
A customer number with any other character ("UNKNOWN-3", " 12", "") is unknown.
A JSON file can replace it (``python -m sandbox --config FILE``), see :func:`load_config`;
``--customers FILE`` replaces just the register, see :func:`load_customers`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sandbox.random_faults import FaultProfile

DEMO_COMPANY_API_KEY = "demo-company-key"
DEMO_CONNECT_API_KEY = "demo-connect-key"
DEMO_FORTNOX_CLIENT_ID = "demo-fortnox-client"
DEMO_FORTNOX_CLIENT_SECRET = "demo-fortnox-secret"
DEMO_FORTNOX_REFRESH_TOKEN = "demo-fortnox-refresh"
DEMO_FORTNOX_TENANT_ID = "demo-fortnox-tenant"
DEMO_INVOICE_SERVICE_TOKEN = "demo-invoice-service-token"
# The scopes a Fortnox token is granted (Fortnox's names for the resources the sandbox serves).
DEFAULT_FORTNOX_SCOPE = "article companyinformation invoice offer order"

T = TypeVar("T")

# Every customer number that appears in the three SoftOne GO specs, with Swedish-looking names
# (the OCR'd UI screenshots only show truncated names, these are completed plausibly).
SPEC_CUSTOMERS: dict[str, str] = {
    "3879": "Rasmus Bygg AB",
    "013": "Berglund Transport AB",
    "11357": "Per Persson",
    "1006": "Kristina Holm AB",
    "1149": "Jimmy Mattsson AB",
    "4185": "Sebastiangren AB",
    "5053": "Theresedotter AB",
    "1384": "Louise Lindqvist AB",
    "1389": "Robban Rör AB",
    "1391": "Jonathan Ek AB",
    "1169": "Isaberg Fastigheter AB",
    "5154": "Alexey AB",
    "5181": "Ehrengren VVS AB",
    "2581": "Tildessa Bostäder AB",
    "2206": "Juhadsh Service AB",
    "10158": "Juliusberg Lunga AB",
    "11": "Kund 11",
    "1892": "Björnsdotter AB",
    "1633": "Olivegren AB",
    "3650": "Nellesson AB",
    "5552": "Johannesqvist AB",
    "5265": "Joakimar AB",
    "5546": "Elkasson AB",
    "5513": "Sofiesdotter AB",
    "4416": "Stinaahl AB",
    "5345": "Juliusdotter AB",
    "5076": "Lund AB",
    "4881": "Tobiasur AB",
}


def is_all_digits(customer_nr: object) -> bool:
    """True for a non-empty string of ASCII digits ("013" and "13" are different customers)."""
    return isinstance(customer_nr, str) and customer_nr.isascii() and customer_nr.isdigit()


def generated_name(customer_nr: str) -> str:
    return f"Kund {customer_nr}"


class AllDigitCustomers(Mapping[str, str]):
    """The default register: every all-digit customer number is a customer.

    ``nr in register`` and ``register[nr]`` work for every all-digit string (spec names from
    :data:`SPEC_CUSTOMERS`, else :func:`generated_name`); anything else is unknown (KeyError).
    Iteration and ``len`` cover only the NAMED numbers (the register is infinite).
    """

    def __init__(self, names: Mapping[str, str] | None = None) -> None:
        self.names = dict(SPEC_CUSTOMERS if names is None else names)

    def __contains__(self, customer_nr: object) -> bool:
        return is_all_digits(customer_nr)

    def __getitem__(self, customer_nr: str) -> str:
        if not is_all_digits(customer_nr):
            raise KeyError(customer_nr)
        return self.names.get(customer_nr) or generated_name(customer_nr)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"AllDigitCustomers({len(self.names)} named)"


def default_customers() -> AllDigitCustomers:
    """Every all-digit customer number; the spec customers keep their names from the specs."""
    return AllDigitCustomers()


@dataclass(frozen=True)
class Company:
    """One tenant: its companyApiKey, the connectApiKeys allowed to use it, its id and name."""

    company_api_key: str
    connect_api_keys: frozenset[str]
    company_id: int
    name: str


def _demo_companies() -> dict[str, Company]:
    demo = Company(DEMO_COMPANY_API_KEY, frozenset({DEMO_CONNECT_API_KEY}), 1592, "Demo AB")
    return {demo.company_api_key: demo}


@dataclass(frozen=True)
class FortnoxAccount:
    """One Fortnox account (company) and the OAuth client that reaches it.

    ``refresh_token`` is the client's first refresh token (authorization-code flow): valid ONCE
    per sandbox process, each use hands out its successor. ``tenant_id`` enables the
    client-credentials flow (a service account sends it as the ``TenantId`` header); None: the
    client may not use that flow. ``easy_vat``: the account's EasyVat setting (error 2004167).
    """

    client_id: str
    client_secret: str
    company_id: int
    name: str
    refresh_token: str | None = None
    tenant_id: str | None = None
    easy_vat: bool = True
    scope: str = DEFAULT_FORTNOX_SCOPE


def _demo_fortnox_accounts() -> dict[str, FortnoxAccount]:
    demo = FortnoxAccount(
        client_id=DEMO_FORTNOX_CLIENT_ID,
        client_secret=DEMO_FORTNOX_CLIENT_SECRET,
        company_id=8051,
        name="Demo Fortnox AB",
        refresh_token=DEMO_FORTNOX_REFRESH_TOKEN,
        tenant_id=DEMO_FORTNOX_TENANT_ID,
    )
    return {demo.client_id: demo}


@dataclass(frozen=True)
class InvoiceServiceClient:
    """One client of the invoice service: its static API token, internal id (shown as ``C.<id>``),
    name and the user its invoices are ``createdBy``."""

    token: str
    client_id: int
    name: str
    created_by: str = "api-user@example.com"


def _demo_invoice_service_clients() -> dict[str, InvoiceServiceClient]:
    # Id and name of the spec's example response ("clientId": "C.100123", "clientName": "Quiddly Test").
    demo = InvoiceServiceClient(DEMO_INVOICE_SERVICE_TOKEN, 100123, "Quiddly Test")
    return {demo.token: demo}


@dataclass
class SandboxConfig:
    """Everything the sandbox needs to know at start-up (latency can change at run time)."""

    companies: dict[str, Company] = field(default_factory=_demo_companies)  # by companyApiKey
    # CustomerNr -> name; ``in`` decides whether a customer exists (default: every all-digit number)
    customers: Mapping[str, str] = field(default_factory=default_customers)
    token_ttl_seconds: int = 3600  # 60 minutes
    latency_ms: int = 0
    latency_jitter_ms: int = 0
    first_key: int = 21027274  # the Key of the invoice example; Keys are global, never reused
    first_order_number: int = 211  # the order example answers Strings ["211"]
    first_invoice_number: int = 17536  # follows the last invoice number in the specs' UI lists
    faults: FaultProfile | None = None  # random faults armed at start-up and again by every reset
    # Fortnox: accounts by client_id, access-token lifetime, and the rate limit per access token
    # (Fortnox: 25 requests in any sliding 5 s; the limit and window can change at run time).
    fortnox_accounts: dict[str, FortnoxAccount] = field(default_factory=_demo_fortnox_accounts)
    fortnox_token_ttl_seconds: int = 3600
    fortnox_rate_limit: int = 25
    fortnox_rate_window_seconds: float = 5.0
    # The invoice service: clients by API token.
    invoice_service_clients: dict[str, InvoiceServiceClient] = field(default_factory=_demo_invoice_service_clients)


def is_positive_number(value: object) -> bool:
    """A finite JSON number > 0 (booleans are not numbers)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(f"invalid sandbox config: {message}")


def _company_from_json(raw: Any, index: int) -> Company:
    where = f"companies[{index}]"
    _require(isinstance(raw, Mapping), f"{where} must be an object")
    fields = ("company_api_key", "connect_api_keys", "company_id", "name")
    key, connect, cid, name = (raw.get(k) for k in fields)
    _require(isinstance(key, str) and key != "", f"{where}.company_api_key must be a non-empty string")
    _require(
        isinstance(connect, list) and bool(connect) and all(isinstance(c, str) and c for c in connect),
        f"{where}.connect_api_keys must be a non-empty list of non-empty strings",
    )
    _require(isinstance(cid, int) and not isinstance(cid, bool), f"{where}.company_id must be an integer")
    _require(isinstance(name, str), f"{where}.name must be a string")
    return Company(key, frozenset(connect), cid, name)


def _optional_str(raw: Mapping[str, Any], name: str, where: str) -> str | None:
    value = raw.get(name)
    _require(value is None or (isinstance(value, str) and value != ""), f"{where}.{name} must be a non-empty string")
    return value


def _fortnox_account_from_json(raw: Any, index: int) -> FortnoxAccount:
    where = f"fortnox_accounts[{index}]"
    _require(isinstance(raw, Mapping), f"{where} must be an object")
    known = {"client_id", "client_secret", "company_id", "name", "refresh_token", "tenant_id", "easy_vat", "scope"}
    unknown = sorted(set(raw) - known)
    _require(not unknown, f"{where} has unknown field(s) {unknown}")
    for name in ("client_id", "client_secret"):
        _require(isinstance(raw.get(name), str) and raw[name] != "", f"{where}.{name} must be a non-empty string")
    cid = raw.get("company_id")
    _require(isinstance(cid, int) and not isinstance(cid, bool), f"{where}.company_id must be an integer")
    _require(isinstance(raw.get("name"), str), f"{where}.name must be a string")
    refresh_token, tenant_id = _optional_str(raw, "refresh_token", where), _optional_str(raw, "tenant_id", where)
    _require(refresh_token is not None or tenant_id is not None, f"{where} needs a refresh_token or a tenant_id")
    easy_vat = raw.get("easy_vat", True)
    _require(isinstance(easy_vat, bool), f"{where}.easy_vat must be true or false")
    scope = raw.get("scope", DEFAULT_FORTNOX_SCOPE)
    _require(isinstance(scope, str), f"{where}.scope must be a string")
    return FortnoxAccount(
        raw["client_id"], raw["client_secret"], cid, raw["name"], refresh_token, tenant_id, easy_vat, scope
    )


def _invoice_service_client_from_json(raw: Any, index: int) -> InvoiceServiceClient:
    where = f"invoice_service_clients[{index}]"
    _require(isinstance(raw, Mapping), f"{where} must be an object")
    unknown = sorted(set(raw) - {"token", "client_id", "name", "created_by"})
    _require(not unknown, f"{where} has unknown field(s) {unknown}")
    _require(isinstance(raw.get("token"), str) and raw["token"] != "", f"{where}.token must be a non-empty string")
    cid = raw.get("client_id")
    _require(
        isinstance(cid, int) and not isinstance(cid, bool) and cid > 0, f"{where}.client_id must be an integer > 0"
    )
    _require(isinstance(raw.get("name"), str), f"{where}.name must be a string")
    created_by = raw.get("created_by", InvoiceServiceClient.created_by)
    _require(isinstance(created_by, str), f"{where}.created_by must be a string")
    return InvoiceServiceClient(raw["token"], cid, raw["name"], created_by)


def _keyed_list(
    data: Mapping[str, Any], name: str, parse: Callable[[Any, int], T], key: Callable[[T], str], key_name: str
) -> dict[str, T] | None:
    """`data[name]` (None when absent): a non-empty list whose entries `parse` reads, by their `key`; two
    entries with the same key are refused as a duplicate `key_name`."""
    if name not in data:
        return None
    raw = data[name]
    _require(isinstance(raw, list) and bool(raw), f"{name} must be a non-empty list")
    entries = [parse(entry, i) for i, entry in enumerate(raw)]
    by_key = {key(entry): entry for entry in entries}
    _require(len(by_key) == len(entries), f"duplicate {key_name}")
    return by_key


def config_from_dict(data: Mapping[str, Any]) -> SandboxConfig:
    """Build a config from the JSON file's structure.

    ``companies`` (SoftOne tenants), ``fortnox_accounts`` and ``invoice_service_clients``
    replace the demo tenant of their API, ``customers`` replaces the default customer list (all
    optional). The optional scalar keys ``token_ttl_seconds``, ``latency_ms``,
    ``latency_jitter_ms``, ``first_key``, ``first_order_number``, ``first_invoice_number``,
    ``fortnox_token_ttl_seconds``, ``fortnox_rate_limit`` (>= 1) and
    ``fortnox_rate_window_seconds`` (> 0, may be fractional) override the defaults.

    A Fortnox account: ``{"client_id", "client_secret", "company_id", "name", "refresh_token"
    and/or "tenant_id", "easy_vat" (default true), "scope" (optional)}``; an invoice-service
    client: ``{"token", "client_id" (integer), "name", "created_by" (optional)}``.
    """
    config = SandboxConfig()
    accounts = _keyed_list(
        data, "fortnox_accounts", _fortnox_account_from_json, lambda a: a.client_id, "fortnox client_id"
    )
    if accounts is not None:
        config.fortnox_accounts = accounts
    clients = _keyed_list(
        data,
        "invoice_service_clients",
        _invoice_service_client_from_json,
        lambda c: c.token,
        "invoice-service token",
    )
    if clients is not None:
        config.invoice_service_clients = clients
    if "fortnox_rate_limit" in data:
        value = data["fortnox_rate_limit"]
        _require(isinstance(value, int) and not isinstance(value, bool) and value >= 1, "fortnox_rate_limit >= 1")
        config.fortnox_rate_limit = value
    if "fortnox_rate_window_seconds" in data:
        value = data["fortnox_rate_window_seconds"]
        _require(is_positive_number(value), "fortnox_rate_window_seconds must be a number > 0")
        config.fortnox_rate_window_seconds = float(value)
    companies = _keyed_list(data, "companies", _company_from_json, lambda c: c.company_api_key, "company_api_key")
    if companies is not None:
        config.companies = companies
    if "customers" in data:
        raw = data["customers"]
        _require(
            isinstance(raw, Mapping) and all(isinstance(v, str) for v in raw.values()),
            'customers must be an object {"<CustomerNr>": "<name>"}',
        )
        config.customers = dict(raw)
    for name in (
        "token_ttl_seconds",
        "latency_ms",
        "latency_jitter_ms",
        "first_key",
        "first_order_number",
        "first_invoice_number",
        "fortnox_token_ttl_seconds",
    ):
        if name in data:
            value = data[name]
            _require(isinstance(value, int) and not isinstance(value, bool) and value >= 0, f"{name} >= 0")
            setattr(config, name, value)
    return config


def _read_json(path: str | Path, what: str) -> Any:
    """The parsed JSON file; ValueError (with the path) if it cannot be read or parsed."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:  # json.JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"{what} {path} is not valid JSON: {exc}") from exc


def load_config(path: str | Path) -> SandboxConfig:
    """Read a JSON config file (see :func:`config_from_dict`)."""
    data = _read_json(path, "sandbox config file")
    _require(isinstance(data, Mapping), "the file must hold a JSON object")
    return config_from_dict(data)


def customers_from_json(data: Any) -> dict[str, str]:
    """The register of a ``--customers`` file: ``{"<CustomerNr>": "<name>", ...}`` or a list of
    customer numbers (strings, or non-negative integers) whose names are generated."""

    def fail(message: str) -> ValueError:
        return ValueError(f"invalid customers file: {message}")

    if isinstance(data, Mapping):
        for nr, name in data.items():
            if not nr:
                raise fail("a customer number must not be empty")
            if not isinstance(name, str):
                raise fail(f"the name of customer {nr!r} must be a string")
        return dict(data)
    if isinstance(data, list):
        customers: dict[str, str] = {}
        for item in data:
            if isinstance(item, int) and not isinstance(item, bool) and item >= 0:
                item = str(item)
            if not isinstance(item, str) or not item:
                raise fail(f"customer numbers must be non-empty strings, got {item!r}")
            customers[item] = SPEC_CUSTOMERS.get(item) or generated_name(item)
        return customers
    raise fail('expected an object {"<CustomerNr>": "<name>"} or a list of customer numbers')


def load_customers(path: str | Path) -> dict[str, str]:
    """Read a ``--customers`` file (see :func:`customers_from_json`): it REPLACES the register."""
    return customers_from_json(_read_json(path, "customers file"))
