"""A local stand-in for the SoftOne GO ERP API (the endpoints erpsync uses).

It behaves like the documented service - token login, posting arrays of customer invoices and
orders, the CustomerInvoices Filter - keeps everything in memory, and adds operator endpoints
under ``/_sandbox`` (ledger, stats, fault injection, latency) for integrators and tests.
It imports nothing from worker/, tasks/ or schemas/ on purpose: it is an independent reading
of the specs, so a mistake in our models cannot hide behind the same mistake here.

    from sandbox import create_app, serve
    serve(port=8765, latency_ms=30)          # or: python -m sandbox --port 8765
"""

from sandbox.app import create_app
from sandbox.config import SandboxConfig
from sandbox.server import background_server, serve

__all__ = ["SandboxConfig", "background_server", "create_app", "serve"]
