// Supervisor dashboard: the last day's figures from GET /dashboard/api/figures (token-protected).
// Labels come from stored records (intents, queues, reasons), so they are set with textContent only.
"use strict";

const TOKEN_KEY = "ivr-dashboard-token";
const REFRESH_MS = 60000;
const $ = (id) => document.getElementById(id);
let timer = null;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function pct(x) {
  return x === null || x === undefined ? "—" : `${(100 * x).toFixed(1)} %`;
}

function num(x, digits = 0) {
  return x === null || x === undefined ? "—" : Number(x).toFixed(digits);
}

function tile(label, value, note) {
  const node = el("div", "tile");
  node.append(el("div", "label", label), el("div", "value", value));
  if (note) node.appendChild(el("div", "note", note));
  return node;
}

function bars(id, counts) {
  const box = $(id);
  const entries = Object.entries(counts || {});
  if (!entries.length) {
    box.replaceChildren(el("p", "none", "None."));
    return;
  }
  const top = Math.max(...entries.map(([, n]) => n));
  box.replaceChildren(...entries.map(([name, n]) => {
    const row = el("div", "row");
    const track = el("div", "track");
    const fill = el("div", "fill");
    fill.style.width = `${(100 * n) / top}%`;
    track.appendChild(fill);
    row.append(el("span", "name", name), track, el("span", "count", String(n)));
    row.title = `${name}: ${n}`;
    return row;
  }));
}

function render(f) {
  const answered = f.answered;
  $("period").textContent = `${new Date(f.since * 1000).toLocaleString()} – ${new Date(f.until * 1000).toLocaleString()}`;
  $("empty").hidden = answered > 0;
  $("tiles").replaceChildren(
    tile("Answered calls", String(answered), `${f.calls} calls in all`),
    tile("Containment", pct(f.containment_rate), "served without a human"),
    tile("Transfer rate", pct(f.transfer_rate), "handed to an agent"),
    tile("Abandoned in IVR", pct(f.abandon_ivr_rate), "left before being served"),
    tile("Abandoned on hold", pct(f.abandon_hold_rate), "of transfers"),
    tile("IVR handle time", f.handle_time_s.p50 === null ? "—" : `${num(f.handle_time_s.p50, 1)} s`,
         `median; p95 ${num(f.handle_time_s.p95, 1)} s`),
    tile("Repeat calls (7 d)", pct(f.repeat_rate), `${f.repeat_calls} repeat calls`),
    tile("Escalation accuracy", pct(f.escalation_accuracy),
         `${Object.values(f.dispositions || {}).reduce((a, b) => a + b, 0)} agent dispositions`),
  );
  bars("outcomes", f.outcomes);
  bars("queues", f.transfers_by_queue);
  bars("reasons", f.transfers_by_reason);
  bars("dispositions", f.dispositions);

  const funnel = Object.entries(f.funnel || {});
  $("funnel").replaceChildren(...(funnel.length ? funnel.map(([intent, s]) => {
    const tr = el("tr");
    tr.append(el("td", "", intent), el("td", "n", String(s.recognized)),
              el("td", "n", String(s.served)), el("td", "n", String(s.contained)));
    return tr;
  }) : [emptyRow(4)]));

  const stages = Object.entries(f.latency_ms || {});
  const top = Math.max(1, ...stages.map(([, s]) => s.p95 || 0));
  $("latency").replaceChildren(...(stages.length ? stages.map(([stage, s]) => {
    const tr = el("tr");
    const spark = el("div", "spark");
    const p50 = el("span", "p50");
    p50.style.width = `${(200 * (s.p50 || 0)) / top}px`;
    const p95 = el("span", "p95");
    p95.style.width = `${(200 * Math.max(0, (s.p95 || 0) - (s.p50 || 0))) / top}px`;
    spark.append(p50, p95);
    const cell = el("td");
    cell.appendChild(spark);
    tr.append(el("td", "", stage), el("td", "n", String(s.count)), el("td", "n", num(s.p50)),
              el("td", "n", num(s.p95)), cell);
    return tr;
  }) : [emptyRow(5)]));
}

function emptyRow(span) {
  const tr = el("tr");
  const td = el("td", "none", "None.");
  td.colSpan = span;
  tr.appendChild(td);
  return tr;
}

async function load() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return;
  const response = await fetch("/dashboard/api/figures?hours=24", {
    headers: { Authorization: `Bearer ${token}` },
  });
  if (response.status === 401) {
    signOut("That token is not valid.");
    return;
  }
  if (!response.ok) {
    $("period").textContent = `Could not load the figures (HTTP ${response.status}).`;
    return;
  }
  render(await response.json());
  $("sign-in").hidden = true;
  $("who").hidden = false;
  $("board").hidden = false;
  document.body.dataset.loaded = "true";
}

function signOut(error = "") {
  sessionStorage.removeItem(TOKEN_KEY);
  clearInterval(timer);
  $("board").hidden = true;
  $("who").hidden = true;
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = error;
  $("token").value = "";
}

function start() {
  $("sign-in").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("sign-in-error").textContent = "";
    load();
    timer = setInterval(load, REFRESH_MS);
  });
  $("sign-out").addEventListener("click", () => signOut());
  $("refresh").addEventListener("click", () => load());
  if (sessionStorage.getItem(TOKEN_KEY)) {
    load();
    timer = setInterval(load, REFRESH_MS);
  } else {
    $("sign-in").hidden = false;
  }
}

start();
