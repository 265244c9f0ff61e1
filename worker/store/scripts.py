"""The store's Lua scripts: one `.lua` file each in worker/store/lua/, read once and registered per client.

A script that shares functions with others names them on a line of its own, `-- include: <name>`, and the
loader puts `lua/<name>.lua` there (Redis scripts cannot include one another). Each file says in its
opening comment what KEYS and ARGV it takes and what it returns.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import redis
from redis.commands.core import Script

__all__ = ["load_script", "script_text"]

LUA_DIR = Path(__file__).with_name("lua")
_INCLUDE = re.compile(r"^-- include: ([a-z_]+)$", re.M)


@cache
def script_text(name: str) -> str:
    """The text of `lua/<name>.lua`, its includes expanded (once each, where first named)."""
    text = (LUA_DIR / f"{name}.lua").read_text(encoding="utf-8")
    return _INCLUDE.sub(lambda m: script_text(m.group(1)), text)


def load_script(client: redis.Redis, name: str) -> Script:
    """The script `name` registered on `client` (sent by its SHA, loaded on the first NOSCRIPT)."""
    return client.register_script(script_text(name))
