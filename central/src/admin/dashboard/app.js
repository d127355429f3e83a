// Tally's dashboard. The token lives in this tab's sessionStorage and travels only in the
// Authorization header of same-origin fetch calls. Data is written into the page as text.
"use strict";

const KEY = "tally-token";
const REFRESH_MS = 3000;
let timer = null;
let pending = null; // {action, warehouse, sku}

const $ = (id) => document.getElementById(id);

function token() {
  return sessionStorage.getItem(KEY);
}

async function api(path, options = {}) {
  const headers = { Authorization: "Bearer " + token() };
  if (options.body) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { ...options, headers, cache: "no-store", credentials: "omit" });
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = null; }
  if (!response.ok) {
    const message = body && body.error ? body.error.message : response.status + " " + response.statusText;
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return body;
}

function cell(row, value) {
  const td = document.createElement("td");
  td.textContent = value === null || value === undefined || value === "" ? "–" : String(value);
  row.appendChild(td);
  return td;
}

function fill(tbody, items, columns, empty) {
  tbody.replaceChildren();
  if (items.length === 0) {
    const row = tbody.insertRow();
    const td = cell(row, empty);
    td.colSpan = tbody.parentElement.tHead.rows[0].cells.length;
    td.className = "empty";
    return;
  }
  for (const item of items) {
    const row = tbody.insertRow();
    for (const column of columns) {
      const value = column(item, row);
      if (value !== undefined) cell(row, value);
    }
  }
}

// An RFC 3339 time to the second, for reading.
function when(text) {
  return typeof text === "string" ? text.replace(/\.\d+Z$/, "Z").replace("T", " ") : text;
}

function plural(n, word) {
  return n + " " + word + (n === 1 ? "" : "s");
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return null;
  if (seconds < 90) return Math.round(seconds) + " s";
  if (seconds < 5400) return Math.round(seconds / 60) + " min";
  return (seconds / 3600).toFixed(1) + " h";
}

function agentState(a) {
  if (a.revoked) return "revoked";
  return a.connected ? "connected" : "disconnected";
}

function unmerged(a) {
  return a.logs.reduce((n, l) => n + l.unmerged_events, 0);
}

function renderAgents(agents) {
  fill($("agents").tBodies[0], agents, [
    (a) => a.agent_id,
    (a) => a.warehouse,
    (a, row) => { const td = cell(row, agentState(a)); td.className = "state-" + agentState(a); },
    (a) => when(a.last_seen),
    (a) => a.lag_events,
    (a) => age(a.oldest_unsynced_age_seconds),
    (a) => unmerged(a),
    (a) => a.clock_behind_seconds === undefined ? null : a.clock_behind_seconds.toFixed(1) + " s",
    (a) => (a.log_replaced ? "yes" : "no"),
  ], "No agents are registered.");
  const list = $("agent-ids");
  list.replaceChildren();
  for (const a of agents) {
    const option = document.createElement("option");
    option.value = a.agent_id;
    list.appendChild(option);
  }
}

function renderOdoo(o) {
  const facts = [
    ["Merging", o.enabled === false ? "not configured" : "on"],
    ["Reachable", o.enabled === false ? null : o.connected ? "yes (Odoo " + (o.odoo_version || "?") + ", " + (o.odoo_api || "?") + ")" : "no"],
    ["Circuit", o.circuit],
    ["Alert", o.alert],
    ["Last error", o.last_error],
    ["Last merge", when(o.last_merge_at)],
    ["Unmerged events", o.unmerged_events],
    ["Merged events", o.merged_events],
    ["Parked / queued / discarded", o.parked_events + " / " + o.queued_for_retry + " / " + o.discarded_events],
  ];
  const dl = $("odoo");
  dl.replaceChildren();
  for (const [name, value] of facts) {
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    dd.textContent = value === null || value === undefined ? "–" : String(value);
    dl.append(dt, dd);
  }
}

function renderDeadLetters(d) {
  $("dlq-summary").textContent = d.total === 0
    ? "No events are parked." + (d.queued_for_retry ? " " + d.queued_for_retry + " queued for a retry." : "")
    : plural(d.total, "event") + " parked in " + d.groups.length + " (warehouse, SKU)" + (d.queued_for_retry ? "; " + d.queued_for_retry + " queued for a retry." : ".");
  fill($("dlq").tBodies[0], d.groups, [
    (g) => g.warehouse,
    (g) => g.sku,
    (g) => g.events,
    (g) => g.reason,
    (g) => g.message,
    (g) => when(g.first_parked_at),
    (g) => g.sample.join(", ") + (g.events > g.sample.length ? ", …" : ""),
    (g, row) => {
      const td = document.createElement("td");
      for (const action of ["retry", "discard"]) {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = action === "retry" ? "Retry" : "Discard";
        button.dataset.action = action;
        button.dataset.warehouse = g.warehouse;
        button.dataset.sku = g.sku;
        button.addEventListener("click", () => ask(action, g.warehouse, g.sku));
        td.appendChild(button);
      }
      row.appendChild(td);
    },
  ], "Nothing is parked.");
}

function ask(action, warehouse, sku) {
  pending = { action, warehouse, sku };
  $("dlq-action-what").textContent = (action === "retry" ? "Retry" : "Discard") + " every parked event of " + sku + " in " + warehouse + ".";
  $("dlq-action").hidden = false;
  $("dlq-reason").value = "";
  $("dlq-reason").focus();
}

async function confirmAction(event) {
  event.preventDefault();
  if (!pending) return;
  const reason = $("dlq-reason").value.trim();
  if (!reason) { $("dlq-result").textContent = "A reason is required."; return; }
  const { action, warehouse, sku } = pending;
  try {
    const answer = await api("/v1/dead-letters/" + action, { method: "POST", body: JSON.stringify({ warehouse, sku, reason }) });
    $("dlq-result").textContent = action === "retry"
      ? answer.queued + " events of " + sku + " queued for a retry."
      : answer.discarded + " events of " + sku + " discarded.";
    pending = null;
    $("dlq-action").hidden = true;
    refresh();
  } catch (error) {
    $("dlq-result").textContent = "Refused: " + error.message;
  }
}

function renderWarnings(warnings) {
  const list = $("warnings");
  list.replaceChildren();
  if (warnings.length === 0) {
    const li = document.createElement("li");
    li.textContent = "None: all is well.";
    li.className = "ok";
    list.appendChild(li);
  }
  for (const w of warnings) {
    const li = document.createElement("li");
    li.className = w.severity;
    li.textContent = w.severity + ": " + w.message;
    li.dataset.code = w.code;
    list.appendChild(li);
  }
}

// The section stays hidden while central has no channels.
function renderChannels(channels) {
  const section = $("channels-section");
  if (!Array.isArray(channels)) { section.hidden = true; return; }
  section.hidden = false;
  fill($("channels").tBodies[0], channels, [
    (c) => c.name,
    (c) => c.kind || "-",
    (c) => c.pending,
    (c) => c.oldest_pending_age_s == null ? "-" : age(c.oldest_pending_age_s),
    (c) => when(c.last_success) || "-",
    (c) => c.errors,
    (c) => c.dead_letters,
    (c) => c.drift_found,
    (c) => c.circuit || "-",
    (c) => c.alert || "-",
  ], "No channels.");
}

// A SKU per warehouse (as last read from Odoo) and per channel (offered now, last sent).
async function showAvailability(event) {
  event.preventDefault();
  const sku = $("availability-sku").value.trim();
  try {
    const a = await api("/v1/availability?" + new URLSearchParams({ sku }).toString());
    fill($("availability-warehouses").tBodies[0], a.availability, [
      (r) => r.warehouse,
      (r) => r.on_hand,
      (r) => r.reserved,
      (r) => r.free,
      (r) => when(r.read_at),
    ], "No availability of " + sku + " was read from Odoo.");
    fill($("availability-channels").tBodies[0], a.channels || [], [
      (c) => c.channel,
      (c) => c.offered == null ? "-" : c.offered,
      (c) => c.last_sent == null ? "-" : c.last_sent + " (seq " + c.last_sent_seq + ")",
      (c) => when(c.last_sent_at) || "-",
    ], "No channels.");
    $("availability").hidden = false;
    $("availability-result").textContent = "";
  } catch (error) {
    $("availability").hidden = true;
    $("availability-result").textContent = "Cannot read the availability: " + error.message;
  }
}

function renderNotices(n) {
  fill($("notices").tBodies[0], n.notices, [
    (x) => when(x.noticed_at),
    (x) => x.agent_id + ":" + x.seq,
    (x) => x.warehouse,
    (x) => x.sku,
    (x) => x.kind,
    (x) => x.message,
  ], "No notices.");
}

async function trace(event) {
  event.preventDefault();
  const agent = $("trace-agent").value.trim();
  const asked = $("trace-id").value.trim();
  const params = new URLSearchParams({ agent });
  if (/^#\d+$/.test(asked)) params.set("seq", asked.slice(1)); else params.set("id", asked);
  const out = $("trace");
  out.replaceChildren();
  try {
    const t = await api("/v1/trace?" + params.toString());
    const title = document.createElement("p");
    title.className = "trace-state state-" + t.state;
    title.textContent = t.agent_id + ", " + t.query + ": " + t.state + (t.picking ? " into " + t.picking.name + " (" + t.picking.state + ")" : "");
    out.appendChild(title);
    if (t.event) {
      const e = document.createElement("p");
      e.textContent = t.event.type + " " + t.event.sku + " × " + t.event.qty + (t.event.location ? " at " + t.event.location : "");
      out.appendChild(e);
    }
    const ol = document.createElement("ol");
    for (const s of t.steps) {
      const li = document.createElement("li");
      li.className = "step-" + s.status;
      li.textContent = s.step + ": " + s.status + (s.at ? " at " + when(s.at) : "") + " — " + s.detail;
      ol.appendChild(li);
    }
    out.appendChild(ol);
    for (const p of t.channels || []) {
      const line = document.createElement("p");
      line.className = "trace-push";
      line.textContent = "channel " + p.channel + ": last sent " + p.sent + " at " + when(p.at) + (p.after_merge ? ", after the merge" : ", before the merge: not yet pushed with this event");
      out.appendChild(line);
    }
  } catch (error) {
    const p = document.createElement("p");
    p.textContent = "Trace failed: " + error.message;
    out.appendChild(p);
  }
}

async function refresh() {
  if (!token()) return;
  try {
    const [status, notices] = await Promise.all([api("/v1/status"), api("/v1/notices?limit=50")]);
    renderWarnings(status.warnings);
    renderAgents(status.agents);
    renderOdoo(status.odoo);
    renderDeadLetters(status.dead_letters);
    renderChannels(status.channels);
    renderNotices(notices);
    $("version").textContent = "tally-central " + status.version;
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
    document.body.dataset.loaded = "true";
  } catch (error) {
    $("updated").textContent = error.status === 401 ? "the token was refused" : "cannot reach central: " + error.message;
    if (error.status === 401) signOut();
  }
}

async function signIn() {
  try {
    const who = await api("/v1/whoami");
    $("role").textContent = who.role === "admin" ? "admin" : "read-only";
    document.body.dataset.role = who.role;
  } catch (error) {
    $("updated").textContent = error.status === 401 ? "the token was refused" : error.message;
    sessionStorage.removeItem(KEY);
    return;
  }
  $("signin").hidden = true;
  $("signedin").hidden = false;
  $("main").hidden = false;
  await refresh();
  clearInterval(timer);
  timer = setInterval(refresh, REFRESH_MS);
}

function signOut() {
  sessionStorage.removeItem(KEY);
  pending = null;
  $("dlq-action").hidden = true;
  $("dlq-result").textContent = "";
  $("trace").replaceChildren();
  clearInterval(timer);
  $("main").hidden = true;
  $("signin").hidden = false;
  $("signedin").hidden = true;
  delete document.body.dataset.loaded;
}

document.addEventListener("DOMContentLoaded", () => {
  $("signin").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("token").value.trim());
    $("token").value = "";
    signIn();
  });
  $("signout").addEventListener("click", () => { signOut(); $("updated").textContent = "signed out"; });
  $("dlq-action").addEventListener("submit", confirmAction);
  $("dlq-cancel").addEventListener("click", () => { pending = null; $("dlq-action").hidden = true; });
  $("trace-form").addEventListener("submit", trace);
  $("availability-form").addEventListener("submit", showAvailability);
  if (token()) signIn(); else $("token").focus();
});
