// The console's live parts: tables and summaries marked data-poll are refreshed from the JSON API every few
// seconds. Only text, a <progress> value and the pause/resume forms' `hidden` change: no HTML is built from
// data (textContent only), and the server-rendered page works without this script.
"use strict";

const POLL_MS = 2000;

function age(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const s = Math.floor(seconds);
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const two = (n) => String(n).padStart(2, "0");
  if (d) return `${d}d${two(h)}h`;
  if (h) return `${h}h${two(m)}m`;
  if (m) return `${m}m${two(r)}s`;
  return `${r}s`;
}

function setText(root, field, value) {
  const el = root.querySelector(`[data-field="${field}"]`);
  if (!el) return;
  if (el.tagName === "PROGRESS") { el.value = Number(value) || 0; return; }
  const text = value === null || value === undefined ? "" : String(value);
  if (el.textContent !== text) el.textContent = text;
}

function jobFields(root, j) {
  setText(root, "status", j.status + (j.stalled ? " (stalled)" : ""));
  const status = root.querySelector('[data-field="status"]');
  if (status) status.className = "status-" + j.status;
  setText(root, "percent", j.percent);
  setText(root, "done", `${j.settled}/${j.total}`);
  setText(root, "created", j.counts.created + j.counts.duplicate);
  setText(root, "failed", j.counts.failed + j.counts.unknown);
  setText(root, "other", j.counts.updated + j.counts.changed);
  setText(root, "throughput", j.throughput);
  setText(root, "eta_seconds", j.eta_seconds === null ? "-" : age(j.eta_seconds));
  for (const [status, n] of Object.entries(j.counts)) setText(root, "count-" + status, n);
}

function tenantFields(row, t) {
  setText(row, "state", t.state + (t.paused_by ? ` (${t.paused_by})` : ""));
  const state = row.querySelector('[data-field="state"]');
  if (state) state.className = "state-" + t.state;
  setText(row, "auth", t.auth);
  setText(row, "interactive", t.lanes.interactive);
  setText(row, "bulk", t.lanes.bulk);
  setText(row, "later", t.later || "");
  setText(row, "rate", t.rate);
  setText(row, "waiting_for", (t.waiting_for || "") + (t.reason ? " — " + t.reason : ""));
  setText(row, "oldest_ready_seconds", age(t.oldest_ready_seconds));
  for (const form of row.querySelectorAll("form[data-when]")) form.hidden = form.dataset.when !== t.state;
}

async function fetchJson(url) {
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (response.status === 401) { window.location.assign("/login"); return null; }
  if (!response.ok) return null;
  return response.json();
}

function byKey(table) {
  const rows = new Map();
  for (const row of table.querySelectorAll("tbody tr[data-key]")) rows.set(row.dataset.key, row);
  return rows;
}

const refreshers = {
  tenants: async (table) => {
    const data = await fetchJson(table.dataset.poll);
    if (!data) return true;
    const rows = byKey(table);
    for (const t of data.tenants) { const row = rows.get(t.name); if (row) tenantFields(row, t); }
    setText(document, "generated_at", data.generated_at);
    return true;
  },
  jobs: async (table) => {
    const data = await fetchJson(table.dataset.poll);
    if (!data) return true;
    const rows = byKey(table);
    for (const j of data.jobs) { const row = rows.get(j.job_id); if (row) jobFields(row, j); }
    return true;
  },
  job: async (section) => {
    const j = await fetchJson(section.dataset.poll);
    if (!j) return true;
    jobFields(section, j);
    return !j.finished_at;  // a finished job does not change any more
  },
};

function start() {
  for (const [id, refresh] of Object.entries(refreshers)) {
    const el = document.getElementById(id);
    if (!el || !el.dataset.poll || el.dataset.final) continue;
    const tick = async () => {
      let again = true;
      try { again = await refresh(el); } catch (e) { again = true; }
      if (again) window.setTimeout(tick, POLL_MS);
    };
    window.setTimeout(tick, POLL_MS);
  }
}

document.addEventListener("DOMContentLoaded", start);
