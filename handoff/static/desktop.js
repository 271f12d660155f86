// Agent desktop: sign in with a token, receive warm transfers over a WebSocket, accept one.
// Package text comes from callers, so it is only ever set with textContent, never as HTML.
"use strict";

const TOKEN_KEY = "ivr-desktop-token";
const CLOSE_UNKNOWN_TOKEN = 4401;
const CURRENCY = "USD"; // the CRM stores cents without a currency; the demo CRM is in dollars
const RECONNECT_MAX_MS = 15000;

const OUTCOME_TEXT = {
  "pending": ["Waiting for an agent", "info"],
  "connected": ["Connected", "ok"],
  "no-answer": ["Agent did not answer", "warn"],
  "busy": ["Agent busy", "warn"],
  "rejected": ["Agent declined", "warn"],
  "abandoned": ["Caller hung up", "bad"],
  "callback": ["Callback booked", "info"],
  "failed": ["Transfer failed", "bad"],
};
const CLOSED = new Set(["connected", "abandoned", "callback", "failed"]);
const DISPOSITION_TEXT = {
  "needed-human": "Recorded: needed a human",
  "could-have-been-served": "Recorded: could have been served",
};

const $ = (id) => document.getElementById(id);
const money = new Intl.NumberFormat(undefined, { style: "currency", currency: CURRENCY });

let socket = null;
let me = null;               // agent name, once the server said hello
let retryMs = 1000;
let retryTimer = null;
const transfers = new Map(); // handoff_id -> { state, card }

// -- small DOM helpers (text only) -----------------------------------------------------------

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function table(headings, rows, numeric = []) {
  const t = el("table");
  const head = t.createTHead().insertRow();
  headings.forEach((h, i) => {
    const th = el("th", numeric.includes(i) ? "num" : "", h);
    th.scope = "col";
    head.appendChild(th);
  });
  const body = t.createTBody();
  for (const row of rows) {
    const tr = body.insertRow();
    row.forEach((cell, i) => {
      tr.appendChild(el("td", numeric.includes(i) ? "num" : "", cell ?? "—"));
    });
  }
  return t;
}

function clock(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
}

function elapsed(fromIso, toIso) {
  // Clamped at 0: the IVR's clock and the agent's may differ by a little.
  const seconds = Math.max(0, Math.round((new Date(toIso).getTime() - new Date(fromIso).getTime()) / 1000));
  if (Number.isNaN(seconds)) return "";
  return `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
}

function percent(x) {
  return typeof x === "number" ? `${Math.round(x * 100)}%` : "";
}

function cents(x) {
  return typeof x === "number" ? money.format(x / 100) : "—";
}

// -- rendering a transfer --------------------------------------------------------------------

function crmSection(customer) {
  const box = document.createDocumentFragment();
  if (!customer) {
    box.appendChild(el("p", "none", "No CRM record: the caller was not identified."));
    return box;
  }
  const part = (name, title, items, build) => {
    const section = el("div", "crm-part");
    section.dataset.part = name;
    section.append(el("h4", "", title), items && items.length ? build(items) : el("p", "none", "None"));
    box.appendChild(section);
  };
  part("accounts", "Accounts", customer.accounts, (xs) =>
    table(["Account", "Balance"], xs.map((a) => [a.number, cents(a.balance_cents)]), [1]));
  part("orders", "Recent orders", customer.recent_orders, (xs) =>
    table(["Order", "Status", "Carrier", "ETA"], xs.map((o) => [o.number, o.status, o.carrier, o.eta])));
  part("charges", "Recent charges", customer.recent_charges, (xs) =>
    table(["Date", "Account", "Description", "Amount"],
      xs.map((c) => [c.charged_on, c.account_number, c.description, cents(c.amount_cents)]), [3]));
  part("cases", "Open cases", customer.open_cases, (xs) =>
    table(["Case", "Subject", "Status", "Opened"],
      xs.map((c) => [c.id, c.subject, c.status, (c.created_at || "").slice(0, 10)])));
  return box;
}

function argumentsText(args) {
  if (!args || typeof args !== "object") return "";
  return Object.entries(args).map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(", ");
}

function buildCard(pkg) {
  const card = $("card-template").content.firstElementChild.cloneNode(true);
  const q = (sel) => card.querySelector(sel);
  const call = pkg.call || {};
  const customer = pkg.customer || null;

  card.dataset.handoffId = pkg.handoff_id;
  q(".caller-name").textContent = customer?.name || "Unknown caller";
  q(".caller-number").textContent = call.caller_number || customer?.phone || "number withheld";
  const tier = q(".tier");
  if (customer?.tier) {
    tier.textContent = customer.tier;
    tier.dataset.tier = String(customer.tier).toLowerCase();
  } else {
    tier.hidden = true;
  }
  q(".summary").textContent = pkg.summary || "No summary.";

  const intent = q(".intent");
  if (pkg.intent) {
    intent.appendChild(el("strong", "", pkg.intent.label));
    intent.appendChild(document.createTextNode(` ${percent(pkg.intent.confidence)}`));
    const alts = (pkg.intent.alternatives || [])
      .filter((a) => a.label !== pkg.intent.label)  // the runners-up, not the winner again
      .map((a) => `${a.label} ${percent(a.confidence)}`);
    if (alts.length) intent.appendChild(el("span", "alternatives", ` · also ${alts.join(", ")}`));
  } else {
    intent.textContent = "not recognised";
  }

  const escalation = pkg.escalation || {};
  q(".reason").textContent = [escalation.reason, escalation.queue && `queue ${escalation.queue}`]
    .filter(Boolean).join(" · ") || "—";

  const sentiment = q(".sentiment");
  const label = pkg.sentiment?.label;
  sentiment.textContent = label || "unknown";
  if (label) sentiment.dataset.label = label;
  if (typeof pkg.sentiment?.latest === "number") sentiment.title = `latest score ${pkg.sentiment.latest.toFixed(2)}`;

  q(".crm").appendChild(crmSection(customer));

  const actions = q(".action-list");
  for (const action of pkg.actions || []) {
    const li = el("li");
    const ok = el("span", "ok", action.ok ? "ok" : "failed");
    ok.dataset.ok = action.ok ? "true" : "false";
    li.append(ok, el("span", "tool", action.tool), el("span", "args", argumentsText(action.arguments)));
    if (!action.ok && action.error) li.appendChild(el("span", "error-text", action.error));
    actions.appendChild(li);
  }
  if (!actions.children.length) actions.appendChild(el("li", "none", "Nothing yet."));

  const lines = pkg.transcript || [];
  q(".transcript summary").textContent = `Transcript (${lines.length} ${lines.length === 1 ? "line" : "lines"})`;
  const list = q(".lines");
  for (const line of lines) {
    const li = el("li");
    li.dataset.speaker = line.speaker;
    // Time into the call reads faster than a clock time; the clock time is on hover.
    const at = el("span", "at", call.started_at ? elapsed(call.started_at, line.at) : clock(line.at));
    at.title = clock(line.at);
    li.append(at,
              el("span", "speaker", line.speaker === "caller" ? "Caller" : "IVR"),
              el("span", "text", line.text));
    list.appendChild(li);
  }

  q(".accept").addEventListener("click", () => accept(pkg.handoff_id));
  for (const button of card.querySelectorAll(".dispose")) {
    button.addEventListener("click", () => dispose(pkg.handoff_id, button.dataset.disposition));
  }
  return card;
}

function showState(entry) {
  const { state, card, createdAt } = entry;
  const q = (sel) => card.querySelector(sel);
  const closed = CLOSED.has(state.outcome);
  const mine = state.accepted_by !== null && state.accepted_by === me;

  const accepted = q(".accepted");
  accepted.hidden = !state.accepted_by;
  accepted.textContent = state.accepted_by ? `Accepted by ${state.accepted_by}` : "";

  const [text, tone] = OUTCOME_TEXT[state.outcome] || [state.outcome, "info"];
  const outcome = q(".outcome");
  // "Waiting for an agent" says nothing once an agent has it.
  outcome.hidden = state.outcome === "pending" && !!state.accepted_by;
  outcome.textContent = text;
  outcome.dataset.tone = tone;

  const button = q(".accept");
  button.disabled = !!state.accepted_by || closed;
  button.textContent = mine ? "Accepted" : state.accepted_by ? "Taken" : closed ? "Ended" : "Accept";

  // After the transfer, the agent who had the caller says whether a human was needed.
  const rating = q(".disposition");
  rating.hidden = !(mine || (!state.accepted_by && state.outcome === "connected"));
  const done = q(".disposition-done");
  done.hidden = !state.disposition;
  done.textContent = DISPOSITION_TEXT[state.disposition] || "";
  for (const button of card.querySelectorAll(".dispose")) {
    button.hidden = !!state.disposition;
    button.disabled = false;
  }
  q(".disposition-question").hidden = !!state.disposition;

  card.classList.toggle("mine", mine);
  card.classList.toggle("taken", !!state.accepted_by && !mine);
  card.classList.toggle("closed", closed);
  entry.waiting = !state.accepted_by && !closed;
  q(".waiting").textContent = entry.waiting ? waitedText(createdAt) : clock(createdAt);
  updateTitle();
}

function waitedText(createdAt) {
  const waited = elapsed(createdAt, new Date().toISOString());
  return waited ? `waiting ${waited}` : "";
}

function updateTitle() {
  const open = [...transfers.values()].filter((e) => e.waiting).length;
  document.title = open ? `(${open}) Agent desktop` : "Agent desktop";
  $("empty").hidden = transfers.size > 0;
}

function putTransfer(state) {
  const pkg = state.package;
  const old = transfers.get(state.handoff_id);
  const card = buildCard(pkg);
  if (old) {
    card.querySelector(".transcript").open = old.card.querySelector(".transcript").open;
    old.card.replaceWith(card);
  } else {
    $("transfers").prepend(card);
  }
  const entry = { state, card, createdAt: pkg.created_at };
  transfers.set(state.handoff_id, entry);
  showState(entry);
}

function putState(state) {
  const entry = transfers.get(state.handoff_id);
  if (!entry) return;
  entry.state = { ...entry.state, ...state };
  entry.card.querySelector(".refused").hidden = true;
  showState(entry);
}

function refused(handoffId, reason) {
  const entry = transfers.get(handoffId);
  if (!entry) {
    console.warn("desktop refused a request:", reason);
    return;
  }
  const note = entry.card.querySelector(".refused");
  note.textContent = reason;
  note.hidden = false;
  showState(entry); // puts the button back as the state allows
}

function accept(handoffId) {
  if (!socket || socket.readyState !== WebSocket.OPEN) {
    refused(handoffId, "Not connected to the desktop server; try again in a moment.");
    return;
  }
  const button = transfers.get(handoffId).card.querySelector(".accept");
  button.disabled = true;
  button.textContent = "Accepting…";
  socket.send(JSON.stringify({ type: "accept", handoff_id: handoffId }));
}

function dispose(handoffId, disposition) {
  if (!socket || socket.readyState !== WebSocket.OPEN) {
    refused(handoffId, "Not connected to the desktop server; try again in a moment.");
    return;
  }
  for (const button of transfers.get(handoffId).card.querySelectorAll(".dispose")) {
    button.disabled = true;
  }
  socket.send(JSON.stringify({ type: "disposition", handoff_id: handoffId, disposition }));
}

// -- connection and sign-in ------------------------------------------------------------------

function setLink(state, text) {
  const link = $("link");
  link.dataset.state = state;
  link.textContent = text;
}

function connect(token) {
  clearTimeout(retryTimer);
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  socket = new WebSocket(`${scheme}//${location.host}/desktop/ws?token=${encodeURIComponent(token)}`);
  const current = socket;

  current.addEventListener("message", (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "hello") {
      me = message.agent;
      retryMs = 1000;
      transfers.clear(); // the server resends every transfer it holds
      $("transfers").replaceChildren();
      $("agent-name").textContent = me;
      $("sign-in").hidden = true;
      $("who").hidden = false;
      $("desk").hidden = false;
      setLink("live", "Live");
      updateTitle();
    } else if (message.type === "transfer") {
      putTransfer(message.transfer);
    } else if (message.type === "state") {
      putState(message.transfer);
    } else if (message.type === "refused") {
      refused(message.handoff_id, message.reason);
    }
  });

  current.addEventListener("close", (event) => {
    if (current !== socket) return; // replaced by a newer connection
    socket = null;
    if (event.code === CLOSE_UNKNOWN_TOKEN) {
      signOut("That token is not valid. Check it with your supervisor and try again.");
      return;
    }
    if (!sessionStorage.getItem(TOKEN_KEY)) return;
    setLink("lost", `Reconnecting in ${Math.round(retryMs / 1000)} s…`);
    retryTimer = setTimeout(() => connect(token), retryMs);
    retryMs = Math.min(retryMs * 2, RECONNECT_MAX_MS);
  });
}

function signOut(error = "") {
  sessionStorage.removeItem(TOKEN_KEY);
  clearTimeout(retryTimer);
  me = null;
  const old = socket;
  socket = null;
  if (old) old.close();
  transfers.clear();
  $("transfers").replaceChildren();
  $("who").hidden = true;
  $("desk").hidden = true;
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = error;
  document.title = "Agent desktop";
  $("token").value = "";
  $("token").focus();
}

function start() {
  $("sign-in").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("sign-in-error").textContent = "";
    $("sign-in").hidden = true;
    $("who").hidden = false;
    $("agent-name").textContent = "…";
    setLink("connecting", "Connecting…");
    connect(token);
  });
  $("sign-out").addEventListener("click", () => signOut());
  setInterval(() => {
    for (const entry of transfers.values()) {
      if (entry.waiting) entry.card.querySelector(".waiting").textContent = waitedText(entry.createdAt);
    }
  }, 1000);

  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) {
    $("who").hidden = false;
    connect(token);
  } else {
    signOut();
  }
}

start();
