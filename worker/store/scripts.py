"""The store's Lua scripts: one `.lua` file each in worker/store/lua/, read once and registered per client.

A script that shares functions with others names them on a line of its own, `-- include: <name>`, and the
loader puts `lua/<name>.lua` there (Redis scripts cannot include one another). Each file says in its
opening comment which module uses it, what KEYS and ARGV it takes and what it returns.

Lines that hold only a comment stay in the files and are left out of the text sent to Redis: a script queued in a
transaction goes as an EVAL of its text (worker/store/client.py, queue_script), on every call of the hot paths.
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
# A line that is a comment and nothing else (not the start of a long --[[ ]] comment: none of ours has one).
_COMMENT_LINE = re.compile(r"^[ \t]*--(?!\[=*\[).*\n", re.M)


@cache
def _source(name: str) -> str:
    """The text of `lua/<name>.lua`, its includes expanded (once each, where first named), comments kept."""
    text = (LUA_DIR / f"{name}.lua").read_text(encoding="utf-8")
    return _INCLUDE.sub(lambda m: _source(m.group(1)), text)


@cache
def script_text(name: str) -> str:
    """The script `name` as it is sent to Redis: includes expanded, comment-only lines left out."""
    return _COMMENT_LINE.sub("", _source(name))


def load_script(client: redis.Redis, name: str) -> Script:
    """The script `name` registered on `client` (sent by its SHA, loaded on the first NOSCRIPT)."""
    return client.register_script(script_text(name))
