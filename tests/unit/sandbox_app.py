"""The sandbox app in this process, called synchronously through httpx.ASGITransport (no pytest-asyncio
here), and a clock the tests move by hand. Each sandbox test module adds its own API's calls on top."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from sandbox import SandboxConfig, create_app


class FakeClock:
    """Epoch seconds that only change when a test sets `now`."""

    def __init__(self, now: float = 1_771_400_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class InProcessSandbox:
    """A fresh sandbox app and synchronous requests into it."""

    def __init__(self, config: SandboxConfig | None = None, clock: FakeClock | None = None) -> None:
        self.app = create_app(config, clock=clock)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
                return await client.request(method, path, **kwargs)

        return asyncio.run(go())

    def ledger(self, **params: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "/_sandbox/ledger", params=params).json()
        return result

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "/_sandbox/stats").json()
        return result
