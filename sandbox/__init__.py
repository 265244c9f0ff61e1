"""A local stand-in for the SoftOne GO ERP API (the endpoints erpsync uses).

It behaves like the documented service - token login, posting arrays of customer invoices and
orders, the CustomerInvoices Filter - keeps everything in memory, and adds operator endpoints
under ``/_sandbox`` (ledger, stats, fault injection, latency) for integrators and tests.
Faults come as rules (sandbox.faults: "the next N matching requests fail like this") and as
seeded random draws per request (sandbox.random_faults: ``--faults 429=0.05 --seed 7``).
It imports nothing from worker/, tasks/ or schemas/ on purpose: it is an independent reading
of the specs, so a mistake in our models cannot hide behind the same mistake here.

    from sandbox import create_app, serve
    serve(port=8765, latency_ms=30)          # or: python -m sandbox --port 8765
    serve(faults="429=0.05,503=0.05", seed=7)  # or: python -m sandbox --faults 429=0.05,503=0.05 --seed 7
"""

from sandbox.app import create_app
from sandbox.config import SandboxConfig
from sandbox.random_faults import FaultProfile
from sandbox.server import background_server, serve

__all__ = ["FaultProfile", "SandboxConfig", "background_server", "create_app", "serve"]
