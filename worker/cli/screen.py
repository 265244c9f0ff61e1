"""`erpsync status` on a terminal: the overview (worker/ops/overview.py) drawn to fit the screen it is given.

At 80x24 and above, whatever the data: every line fits the width (nothing wraps), the screen holds at most its
height in lines, and no column is narrower than its header. Tables are sized here rather than by rich: each
column gets its content's width, the shrinkable ones (names, reasons) are cut with "…" until the row fits, and a
section shows as many rows as the height leaves it, saying how many it leaves out. `status --json` has everything.

Sections, top to bottom: a headline; what waits in the queues, and the workers; one row per tenant (its backlog,
rate over the last minute, ETA at that rate, and what it waits for or why it stalls); the open jobs (progress,
rate, ETA, stalled ones in red); the failures of the last hour (with how many are older); dead letters, producer
messages rejected, webhooks and the archive, a line each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.cells import cell_len
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from worker.cli.console import plural
from worker.ops.overview import epoch_of, iso, since_text

__all__ = ["KIND_LABELS", "Col", "fitted", "render_overview"]

#: Document kinds as a column shows them.
KIND_LABELS = {"customer_invoice": "invoice", "order": "order", "offer": "offer", "article": "article"}
FAILURE_WINDOW_TEXT = "last hour"
ELLIPSIS = "…"


@dataclass(frozen=True, slots=True)
class Col:
    """A column: its header, alignment, and whether its cells may be cut to fit (ids may not: they are pasted)."""

    header: str
    right: bool = False
    shrink: bool = False
    last_resort: bool = False  # cut only when nothing else can be (a long job id: the JSON has it whole)


def cut(text: str, width: int) -> str:
    """`text` in at most `width` cells, cut with "…" when longer."""
    if cell_len(text) <= width:
        return text
    out = ""
    for char in text:
        if cell_len(out + char) > width - 1:
            break
        out += char
    return out + ELLIPSIS


def widths(cols: Sequence[Col], rows: Sequence[Sequence[str]], width: int) -> list[int] | None:
    """Each column's width so that a row (columns one space apart) fits `width`: its content's, the shrinkable
    ones cut down (the widest first), never below its header. None when even that does not fit."""
    sizes = [max([cell_len(c.header), *(cell_len(r[i]) for r in rows)]) for i, c in enumerate(cols)]
    floors = [cell_len(c.header) if c.shrink else sizes[i] for i, c in enumerate(cols)]
    excess = sum(sizes) + len(cols) - 1 - width
    while excess > 0:
        candidates = [i for i in range(len(cols)) if sizes[i] > floors[i]]
        if not candidates:
            candidates = [i for i, c in enumerate(cols) if c.last_resort and sizes[i] > max(cell_len(c.header), 8)]
        if not candidates:
            return None
        widest = max(candidates, key=lambda i: sizes[i])
        sizes[widest] -= 1
        excess -= 1
    return sizes


def fitted(
    cols: Sequence[Col], rows: Sequence[Sequence[str]], width: int, styles: Sequence[str | None] = ()
) -> Table | None:
    """A table of `rows` that fits `width` (see `widths`), its cells cut to their columns; None if it cannot fit."""
    sizes = widths(cols, rows, width)
    if sizes is None:
        return None
    table = Table(box=None, padding=(0, 1, 0, 0), pad_edge=False, show_edge=False, header_style="bold")
    for col, size in zip(cols, sizes, strict=True):
        table.add_column(col.header, width=size, min_width=size, max_width=size, no_wrap=True, overflow="ellipsis",
                         justify="right" if col.right else "left")  # fmt: skip
    for n, row in enumerate(rows):
        style = styles[n] if n < len(styles) else None
        table.add_row(*(cut(cell, size) for cell, size in zip(row, sizes, strict=True)), style=style)
    return table


def line(text: str, width: int, style: str = "") -> Text:
    """One line of text, cut to `width`."""
    return Text(cut(text, width), style=style, no_wrap=True, overflow="ellipsis")


# ----- values as the columns show them


def count(n: int) -> str:
    """1234 -> 1234, 12345 -> 12.3k, 1234567 -> 1.2M."""
    if n < 10_000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1000:.1f}k" if n < 100_000 else f"{n // 1000}k"
    return f"{n / 1_000_000:.1f}M"


def rate(value: float | None) -> str:
    if not value:
        return "0"
    if value >= 1000:
        return f"{value / 1000:.1f}k/s"
    return f"{value:.0f}/s" if value >= 100 else f"{value:.1f}/s"


def eta(seconds: float | None) -> str:
    return "-" if seconds is None else since_text(seconds)


def kind(value: str | None) -> str:
    return KIND_LABELS.get(value or "", value or "")


def clock(iso: str | None) -> str:
    """The time of day (UTC) of an ISO timestamp: 14:22:04."""
    return (iso or "")[11:19] or "-"


# ----- sections

TENANT_COLS = [Col("tenant", shrink=True), Col("backlog", right=True), Col("rate", right=True), Col("ETA", right=True),
               Col("waits for", shrink=True)]  # fmt: skip
JOB_COLS = [Col("job", last_resort=True), Col("tenant", shrink=True), Col("kind"), Col("done", right=True),
            Col("rate", right=True), Col("ETA", right=True), Col("age", right=True)]  # fmt: skip
FAILURE_COLS = [Col("at"), Col("tenant", shrink=True), Col("ExternalId", shrink=True), Col("reason", shrink=True)]


@dataclass
class Section:
    """A titled table whose rows the screen's height decides: `rows` shown of `total` (the title says so)."""

    title: str
    cols: list[Col]
    rows: list[list[str]]
    styles: list[str | None]
    total: int
    empty: str  # the one line shown when there is nothing
    shown: int = 0

    def lines(self) -> int:
        return 1 if not self.rows or not self.shown else 2 + self.shown


def _tenants(data: dict[str, Any]) -> Section:
    rows, styles = [], []
    shown = [t for t in data.get("tenant_status", []) if t["backlog"] or t["stall"] or t["rate"]]
    idle = len(data.get("tenant_status", [])) - len(shown)
    for t in shown:
        waits = t["stall"] or ""
        if t["stall"] == "paused" and t["paused_by"]:
            waits += f" ({t['paused_by']})"
        if waits and t["stall_seconds"] is not None:
            waits += f" {since_text(t['stall_seconds'])}"
        if t["stall_detail"]:
            waits += f": {t['stall_detail']}"
        rows.append([t["tenant"], count(t["backlog"]), rate(t["rate"]), eta(t["eta_seconds"]), waits])
        styles.append("bold red" if t["stalled"] else ("yellow" if t["stall"] else None))
    idle_text = f", {idle} idle" if idle else ""
    return Section(
        title=f"tenants with work: {{shown}} of {len(shown)}{idle_text} (rate: last minute)",
        cols=TENANT_COLS,
        rows=rows,
        styles=styles,
        total=len(shown),
        empty=f"tenants: no work waiting{idle_text}",
    )


def _jobs(data: dict[str, Any]) -> Section:
    rows, styles = [], []
    for j in data["open_jobs"]:
        done = j["total"] - j["pending"]
        status = "STALLED" if j["stalled"] else (eta(j["eta_seconds"]) if j["rate"] else j["status"])
        rows.append([j["job_id"] or "", j["tenant"] or "", kind(j["kind"]), f"{count(done)}/{count(j['total'])}",
                     rate(j["rate"]), status, eta(j["age_seconds"])])  # fmt: skip
        styles.append("bold red" if j["stalled"] else None)
    total = data["open_jobs_total"]
    return Section(
        title=f"open jobs: {{shown}} of {total}, oldest first",
        cols=JOB_COLS,
        rows=rows,
        styles=styles,
        total=total,
        empty="open jobs: none",
    )


def _failures(data: dict[str, Any], cutoff: str) -> Section:
    counts = data.get("failures") or {"last_hour": 0, "older": 0}
    recent = [f for f in data["recent_failures"] if (f.get("at") or "") >= cutoff]
    rows = []
    for f in recent:
        reason = f["reason"] or ""
        if f["status"] != "failed":
            reason = f"{f['status']}: {reason}"
        rows.append([clock(f.get("at"))[:5], f["tenant"] or "", f["external_id"] or "-", reason])
    older = f" ({counts['older']} older, not shown)" if counts["older"] else ""
    return Section(
        title=f"failures, {FAILURE_WINDOW_TEXT}: {{shown}} of {max(counts['last_hour'], len(recent))}{older}",
        cols=FAILURE_COLS,
        rows=rows,
        styles=["red"] * len(rows),
        total=max(counts["last_hour"], len(recent)),
        empty=f"failures, {FAILURE_WINDOW_TEXT}: none{older}",
    )


def _allot(sections: list[Section], budget: int) -> None:
    """Share `budget` lines among the sections: each with rows needs its title and header, then rows go to each
    in turn until none is left; a section left without a row shows its title line alone."""
    wanting = [s for s in sections if s.rows]
    budget -= len(sections) - len(wanting)  # the empty ones' line
    budget -= 2 * len(wanting)
    while budget < 0 and wanting:  # not even room for the headers: the last sections shrink to a line
        wanting.pop().shown = 0
        budget += 1
    progress = True
    while budget > 0 and progress:
        progress = False
        for s in wanting:
            if budget > 0 and s.shown < len(s.rows):
                s.shown += 1
                budget -= 1
                progress = True


def _render_section(section: Section, width: int) -> list[RenderableType]:
    if not section.rows:
        return [line(section.empty, width)]
    title = section.title.replace("{shown}", str(section.shown), 1)
    if not section.shown:
        return [line(title.split(":")[0] + f": {section.total} (no room on this screen; see status --json)", width)]
    table = fitted(section.cols, section.rows[: section.shown], width, section.styles[: section.shown])
    if table is None:  # the ids alone are wider than the screen
        return [line(f"{title}: too narrow a screen (see status --json)", width)]
    return [line(title, width, "bold"), table]


def _headline(data: dict[str, Any], width: int) -> Text:
    stalled = data["stalled_jobs"]
    jobs = plural(data["open_jobs_total"], "open job")
    text = (f"erpsync {data['key_prefix']} {clock(data['generated_at'])}Z: {jobs}, {stalled} stalled, "
            f"oldest pending {eta(data['oldest_pending_seconds'])}")  # fmt: skip
    return line(text, width, "bold red" if stalled else "bold")


def _pipeline(data: dict[str, Any], width: int) -> Text:
    """The workers (in red when none answers), then what waits in the queues and buffers."""
    queued = sum(q["messages"] for q in data["queues"])
    buffered = sum(b["documents"] for b in data["buffers"])
    waiting = (f"queued: celery {queued}, intake {data['intake_items']}, producers {data['submissions_waiting']}"
               f"+{data['submissions_held']}, buffers {count(buffered)} docs")  # fmt: skip
    if data["workers"]:
        return line(f"workers: {len(data['workers'])} · {waiting}", width)
    why = f" ({data['workers_error']})" if data.get("workers_error") else ""
    return line(f"workers: NONE answering{why} · {waiting}", width, "bold red")


def _footer(data: dict[str, Any], width: int) -> list[Text]:
    out: list[Text] = []
    dead = data["dead_letters"]
    text = f"dead letters: {dead.get('open', dead['count'])} open of {dead['count']}"
    if dead["newest"]:
        newest = dead["newest"][0]
        text += f" (newest {newest['id']} {newest['external_id'] or ''}: {newest['reason'] or ''})"
    out.append(line(text + " · erpsync dead list", width, "red" if dead["newest"] else ""))
    rejected = data["rejected_messages"]
    if rejected["count"]:
        newest = rejected["newest"][0]
        out.append(line(f"producer messages rejected: {rejected['count']} (newest: {newest.get('at')}, job "
                        f"{newest.get('job_id')}: {newest.get('reason')})", width, "red"))  # fmt: skip
    hooks = data["webhooks"]
    text = f"webhooks: {hooks['due']} due, {hooks['failing']} failing, {hooks['given_up']} given up"
    if hooks["events_waiting"]:
        text += f", {plural(hooks['events_waiting'], 'job event')} waiting for a sender"
    out.append(line(text, width, "red" if hooks["failing"] or hooks["given_up"] else ""))
    archive = data["archive"]
    if archive.get("enabled"):
        if archive["index"] == "lost":
            out.append(line(f"DUPLICATE INDEX LOST: {archive['reason']}; intake claims nothing until restored", width,
                            "bold red"))  # fmt: skip
        else:
            text = f"archive: {archive['lag']} not archived yet"
            if archive["oldest_seconds"] is not None:
                text += f", oldest {since_text(archive['oldest_seconds'])}"
            if archive["error"]:
                text += f"; last error: {archive['error']}"
            late = archive["error"] or (archive["oldest_seconds"] or 0) > 60
            out.append(line(text, width, "red" if late else ""))
    return out


def render_overview(data: dict[str, Any], width: int = 80, height: int = 24) -> Group:
    """The overview in at most `height` lines of at most `width` cells (80x24 at least is readable)."""
    generated = epoch_of(data["generated_at"])
    cutoff = iso(generated - 3600) if generated is not None else ""
    head = [_headline(data, width), _pipeline(data, width)]
    foot = _footer(data, width)
    sections = [_tenants(data), _jobs(data), _failures(data, cutoff)]
    _allot(sections, max(0, height - len(head) - len(foot)))
    body = [part for s in sections for part in _render_section(s, width)]
    return Group(*head, *body, *foot)
