"""Connectors: how documents reach one ERP API (authentication, request shape, reading answers).

`CONNECTORS` maps a target to its connector class (worker/connectors/base.py says what one implements);
a new target is a new module here, one line below and its models in schemas/targets.py.
"""

from __future__ import annotations

from worker.connectors.base import Connector, Created, LookupRequest
from worker.connectors.fortnox import FortnoxConnector
from worker.connectors.invoice_service import InvoiceServiceConnector
from worker.connectors.softone import SoftOneConnector

CONNECTORS: dict[str, type[Connector]] = {
    SoftOneConnector.target: SoftOneConnector,
    FortnoxConnector.target: FortnoxConnector,
    InvoiceServiceConnector.target: InvoiceServiceConnector,
}

__all__ = ["CONNECTORS", "Connector", "Created", "LookupRequest"]
