"""The package's layering, held against the code: every import (inside functions too) goes down the layers or
stays in its own, and no import cycle exists anywhere. The layers, lowest first, are the ones worker/__init__.py
lists; a module belongs to the layer with the longest matching prefix."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.unit import layering

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("schemas", "worker", "tasks")

LAYERS: list[list[str]] = [
    ["schemas"],  # pure data: pydantic models
    # what every layer uses
    ["worker.errors", "worker.settings", "worker.redaction", "worker.backoff", "worker.failpoints", "worker.fastjson"],
    ["worker.store"],  # the only owner of Redis state
    ["worker.observability"],  # logs, metrics
    ["worker.archive"],  # the relational archive: beyond Redis's retention (its Redis side is worker.store.outbox)
    ["worker.connectors"],  # one ERP each, the HTTP boundary
    ["worker.pipeline"],  # intake -> batch -> send -> record, no Celery
    ["worker.celery_app"],  # the app, publishing by task name, bootsteps
    ["worker.producer"],  # submit(), readers, raw-Redis job messages
    ["worker.webhooks"],  # signed job webhooks, sent by a process of their own
    ["tasks"],  # thin task adapters
    ["worker.ops"],
    ["worker.console"],  # the web console: pages over worker.ops, worker.store and worker.archive
    ["worker.devstack"],
    ["worker.cli"],
    ["worker"],  # the public surface
]

#: Third-party packages that are Celery (the pipeline's steps know none of them).
CELERY = {"celery", "kombu", "billiard"}
#: What a pure schema may not touch.
IO = {"redis", "httpx", "celery", "kombu", "billiard", "worker", "tasks", "sandbox"}
ERPS = ("worker.connectors.softone", "worker.connectors.fortnox", "worker.connectors.invoice_service")
#: worker.store is the only owner of Redis state, so the only importer of the `redis` package; these modules may
#: import it too, each for the names listed and nothing else ("Redis (type)": the client's class in annotations only).
#: All but the dev stack could take the same from the store (worker/store/errors.py, client.py's RedisClient).
REDIS_OUTSIDE_THE_STORE: dict[str, set[str]] = {
    # Everyone else names Redis's errors and client through worker/store/errors.py and worker/store/client.py.
    "worker.devstack.stack": {"Redis", "RedisError"},  # starts the local redis-server: pings it, shuts it down
}


@pytest.fixture(scope="module")
def graph() -> tuple[dict[str, Path], list[layering.Edge]]:
    return layering.imports(ROOT, PACKAGES)


def top_level_imports(path: Path) -> set[str]:
    """The first name of everything a file imports (absolute imports only), inside functions too."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


def redis_names(path: Path) -> set[str]:
    """What a file takes from the `redis` package (inside functions too): `redis.X`, `alias.X` of a module of it
    imported under another name, `from redis... import X`; "X (type)" where it appears in annotations only."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    aliases: set[str] = set()
    names: set[str] = set()
    in_annotations: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases |= {alias.asname or "redis" for alias in node.names if alias.name.split(".")[0] == "redis"}
        elif isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "redis":
            names |= {alias.name for alias in node.names}
        annotations = [getattr(node, "annotation", None), getattr(node, "returns", None)]
        in_annotations |= {id(n) for a in annotations if isinstance(a, ast.expr) for n in ast.walk(a)}
    typed: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            (typed if id(node) in in_annotations else names).add(node.attr)
    return names | {f"{name} (type)" for name in typed - names}


def redis_outside_the_store(known: dict[str, Path], allowed: dict[str, set[str]]) -> dict[str, list[str]]:
    """Per module outside worker.store, what it takes from `redis` beyond what `allowed` lets it; and an entry of
    `allowed` that no longer imports redis, as `stale` (the list only shrinks)."""
    found: dict[str, list[str]] = {}
    importers = set()
    for module, path in known.items():
        if module == "worker.store" or module.startswith("worker.store.") or "redis" not in top_level_imports(path):
            continue
        importers.add(module)
        extra = sorted(redis_names(path) - allowed.get(module, set())) or ([] if module in allowed else ["import"])
        if extra:
            found[module] = extra
    found |= {module: ["stale"] for module in sorted(set(allowed) - importers)}
    return found


def test_only_the_store_imports_redis(graph: tuple[dict[str, Path], list[layering.Edge]]) -> None:
    """Redis state has one owner: elsewhere `redis` is imported only by the modules listed, for the names listed."""
    known, _ = graph
    assert redis_outside_the_store(known, REDIS_OUTSIDE_THE_STORE) == {}


def test_every_module_is_in_a_layer_and_imports_only_its_own_and_those_below(
    graph: tuple[dict[str, Path], list[layering.Edge]],
) -> None:
    known, edges = graph
    assert len(known) > 60 and len(edges) > 300  # the graph was read at all
    assert [m for m in known if layering.layer_of(m, LAYERS) is None] == []
    assert layering.upward(edges, LAYERS) == []


def test_no_module_imports_one_that_imports_it_back(graph: tuple[dict[str, Path], list[layering.Edge]]) -> None:
    assert layering.cycles(graph[1]) == []


def test_schemas_are_pure(graph: tuple[dict[str, Path], list[layering.Edge]]) -> None:
    known, _ = graph
    impure = {m: sorted(top_level_imports(p) & IO) for m, p in known.items() if m.startswith("schemas")}
    assert {m: found for m, found in impure.items() if found} == {}


def test_the_pipelines_steps_know_no_celery(graph: tuple[dict[str, Path], list[layering.Edge]]) -> None:
    known, _ = graph
    steps = {m: sorted(top_level_imports(p) & CELERY) for m, p in known.items() if m.startswith("worker.pipeline")}
    assert {m: found for m, found in steps.items() if found} == {}


def test_each_connector_knows_one_erp(graph: tuple[dict[str, Path], list[layering.Edge]]) -> None:
    _, edges = graph
    crossing = [e for e in edges if e.source.startswith(ERPS) and e.target.startswith(ERPS)]
    assert [e for e in crossing if e.source.split(".")[2] != e.target.split(".")[2]] == []


def test_tasks_are_thin_adapters(graph: tuple[dict[str, Path], list[layering.Edge]]) -> None:
    """Every function in tasks/ is a Celery task whose body calls a step: a docstring, at most a context or two and
    the call; no classes, no helpers."""
    known, _ = graph
    for module, path in known.items():
        if not module.startswith("tasks"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert not [n.name for n in tree.body if isinstance(n, ast.ClassDef)], module
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                decorators = [ast.unparse(d) for d in node.decorator_list]
                assert any(d.startswith("app.task(") for d in decorators), f"{module}.{node.name} is not a task"
                statements = sum(1 for n in ast.walk(node) if isinstance(n, ast.stmt)) - 1  # the def itself
                assert statements <= 4, f"{module}.{node.name}: {statements} statements; the logic belongs in a step"


def test_the_sandbox_imports_nothing_of_ours() -> None:
    """The sandbox stands for the real ERPs: it is written from their specs, never from our code."""
    ours = {"worker", "tasks", "schemas", "bench", "tests"}
    used = {p.name: sorted(top_level_imports(p) & ours) for p in (ROOT / "sandbox").rglob("*.py")}
    assert {name: found for name, found in used.items() if found} == {}


# ----- the rules themselves catch what they are for: an upward import and a cycle hidden inside functions


def tree(tmp_path: Path, files: dict[str, str]) -> Path:
    """A source tree of `files` (path -> text) under tmp_path, with an empty __init__.py in every folder."""
    for name, text in files.items():
        path = tmp_path / name
        for folder in [path.parent, *path.parent.parents]:
            if folder == tmp_path:
                break
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "__init__.py").touch()
        path.write_text(text)
    return tmp_path


def test_an_upward_import_inside_a_function_is_caught(tmp_path: Path) -> None:
    upward = "def key():\n    from app.pipeline import send  # upward\n    return send\n"
    root = tree(tmp_path, {"app/store/keys.py": upward, "app/pipeline/send.py": "from app.store.keys import key\n"})
    layers = [["app.store"], ["app.pipeline"], ["app"]]
    _, edges = layering.imports(root, ["app"])
    assert layering.upward(edges, layers) == ["app.store.keys:2 -> app.pipeline.send"]
    [cycle] = layering.cycles(edges)
    assert set(cycle.split(" -> ")) == {"app.store.keys", "app.pipeline.send"}


def test_a_cycle_within_one_layer_is_caught(tmp_path: Path) -> None:
    late, later = "def late():\n    from app import c\n", "def later():\n    from . import a\n"
    root = tree(tmp_path, {"app/a.py": "import app.b\n", "app/b.py": late, "app/c.py": later})
    _, edges = layering.imports(root, ["app"])
    assert layering.upward(edges, [["app"]]) == []  # one layer: nothing goes up
    [cycle] = layering.cycles(edges)
    assert set(cycle.split(" -> ")) == {"app.a", "app.b", "app.c"}


def test_a_module_in_no_layer_is_reported(tmp_path: Path) -> None:
    root = tree(tmp_path, {"app/__init__.py": "", "app/x.py": "from app import y\n", "app/y.py": ""})
    _, edges = layering.imports(root, ["app"])
    assert layering.upward(edges, [["app.y"]]) == ["app.x:1 -> app.y"]


def test_redis_outside_the_store_is_caught(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        {
            "app/__init__.py": "",
            "app/store.py": "import redis\n\ndef get(r: redis.Redis) -> str:\n    return r.get('k')\n",
            "app/cli.py": "import redis\n\ndef run(r: redis.Redis) -> None:\n    try:\n        r.ping()\n"
            "    except redis.ConnectionError:\n        pass\n",
            "app/send.py": "def send() -> None:\n    from redis.exceptions import LockError\n"
            "    import redis.client as rc\n    rc.Pipeline\n",
            "app/tidy.py": "",
        },
    )
    known = {name.removeprefix("app."): path for name, path in layering.modules(root, ["app"]).items()}
    known["worker.store.keys"] = known.pop("store")  # the store's own import is fine
    allowed = {"cli": {"ConnectionError", "Redis (type)"}, "tidy": {"RedisError"}}
    assert redis_outside_the_store(known, allowed) == {"send": ["LockError", "Pipeline"], "tidy": ["stale"]}
    allowed["cli"] = {"ConnectionError"}  # the client's class in an annotation is a name taken too
    assert redis_outside_the_store(known, allowed)["cli"] == ["Redis (type)"]
