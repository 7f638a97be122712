// The TrustShip dashboard: one page, plain ES modules, no build step (docs/dashboard.md).
// Every figure comes from the REST API with the signed-in party's key, so the page sees
// exactly what that party may see; a 403 answer's message is shown where the data
// would be, and any statement of what the sharing policy coarsened or withheld
// (`policy` / `redactions` in an answer) is shown next to the data.

const KEY_STORAGE = "trustship.apiKey";
const FINAL = new Set(["Settled", "Resolved", "Cancelled", "Expired"]);
const STATES = ["Created", "Accepted", "Funded", "Shipped", "Delivered", "Disputed",
  "Settled", "Resolved", "Cancelled", "Expired"];
const ZERO = "0x0000000000000000000000000000000000000000";
const PAGE = 50;

const app = {
  key: sessionStorage.getItem(KEY_STORAGE),
  party: null,          // GET /account .party
  deployment: null,     // GET /deployment (token address → symbol)
  stream: null,         // the alert stream's controller
  listeners: new Set(), // functions called with each alert from the stream
  cleanup: null,        // the current view's teardown
};

// ---- the data layer ---------------------------------------------------------------

export class ApiError extends Error {
  constructor(status, body, path) {
    super((body && body.message) || `HTTP ${status} on ${path}`);
    this.status = status;
    this.body = body || {};
    this.code = this.body.code || (status ? `http_${status}` : "network");
    this.path = path;
  }
}

async function api(path, { method = "GET", body } = {}) {
  const headers = { "X-API-Key": app.key || "" };
  if (body !== undefined) headers["content-type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (exc) {
    throw new ApiError(0, { code: "network", message: `the API is not answering (${exc.message})` }, path);
  }
  let data = null;
  const text = await response.text();
  if (text) {
    try { data = JSON.parse(text); } catch { data = { message: text.slice(0, 300) }; }
  }
  if (!response.ok) {
    const err = new ApiError(response.status, data, path);
    if (response.status === 401 && path !== "/account") signOut(err);
    throw err;
  }
  return data;
}

/** What an answer says the sharing policy coarsened or withheld, as sentences. */
export function policyNotes(body) {
  if (!body || typeof body !== "object") return [];
  const notes = [];
  const say = (v) => {
    if (v == null) return;
    if (typeof v === "string") notes.push(v);
    else if (Array.isArray(v)) v.forEach(say);
    else if (typeof v === "object" && (Array.isArray(v.redactions) || "viewer_jurisdiction" in v)) {
      // the sharing policy's statement: one sentence per field and action
      const seen = new Set();
      for (const r of v.redactions || []) {
        const line = `${r.path}: ${r.action}${r.reason ? ` (${r.reason})` : ""}`;
        if (!seen.has(line)) { seen.add(line); notes.push(line); }
      }
      if (Array.isArray(v.grants_used) && v.grants_used.length) notes.push(`released under grant ${v.grants_used.map((g) => `#${g}`).join(", ")} (logged in the disclosure log)`);
      if (notes.length && v.viewer_jurisdiction) notes.unshift(`you read from ${v.viewer_jurisdiction}:`);
    } else if (typeof v === "object") {
      const text = v.message || v.text || v.reason;
      const what = v.field || v.class || v.path || v.name;
      if (text && what) notes.push(`${what}: ${text}`);
      else if (text) notes.push(text);
      else notes.push(Object.entries(v).map(([k, x]) => `${k}: ${typeof x === "object" ? JSON.stringify(x) : x}`).join(", "));
    } else notes.push(String(v));
  };
  say(body.policy);
  say(body.redactions);
  return notes;
}

function showPolicy(container, ...bodies) {
  const notes = bodies.flatMap(policyNotes);
  let box = container.querySelector(":scope > .policy");
  if (!notes.length) { if (box) box.remove(); return; }
  if (!box) {
    box = el("div", { class: "policy", role: "note", "data-testid": "policy" });
    // after a panel's heading (the views redraw a panel as its heading and its data)
    const head = container.firstElementChild;
    if (head && /^H[1-6]$/.test(head.tagName)) head.after(box);
    else container.prepend(box);
  }
  box.replaceChildren(el("strong", {}, "Sharing policy: "), ...notes.map((n) => el("span", {}, n + " ")));
}

/** A view's error state for ``err`` (an ApiError), naming what to do. */
function errorBox(err, what) {
  const box = el("div", { class: "error", role: "alert", "data-testid": "error", "data-code": err.code });
  const b = err.body || {};
  let title;
  if (err.status === 401) title = "Your API key was refused";
  else if (err.status === 403) title = `Not shared with you: the sharing policy refuses ${what}`;
  else if (err.status === 404) title = `${what} was not found, or is not shared with you`;
  else if (err.code === "chain_unavailable" || err.code === "chain_reset") title = "The chain is not reachable";
  else if (err.status === 0) title = "The API is not answering";
  else if (err.status >= 500) title = `The server could not answer for ${what}`;
  else title = `Could not load ${what}`;
  box.append(el("strong", {}, title), el("p", {}, `${err.message}`));
  const extra = ["class", "sensitivity", "rule", "policy_rule", "policy", "error"].filter((k) => b[k] != null && typeof b[k] !== "object");
  if (extra.length || err.code) {
    box.append(el("p", { class: "muted" },
      [`code ${err.code}`, ...extra.map((k) => `${k.replace("_", " ")} ${b[k]}`)].join(" · ")));
  }
  if (b.policy && typeof b.policy === "object") box.append(el("p", { class: "muted" }, policyNotes({ policy: b.policy }).join(" ")));
  return box;
}

// ---- small DOM and formatting helpers ---------------------------------------------

/** ``node``'s children replaced by ``children`` (nested lists flattened, null and false skipped). */
function fill(node, ...children) {
  node.replaceChildren(...children.flat(Infinity).filter((c) => c != null && c !== false)
    .map((c) => (c instanceof Node ? c : document.createTextNode(String(c)))));
  return node;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v === true) node.setAttribute(k, "");
    else node.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

const ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone;
const localFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const utcFmt = new Intl.DateTimeFormat("en-GB", { timeZone: "UTC", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });

/** A unix time in the viewer's zone and in UTC. */
function when(unix) {
  if (unix == null) return el("span", { class: "muted" }, "—");
  const d = new Date(unix * 1000);
  return el("time", { datetime: d.toISOString(), title: `${ZONE}; ${d.toISOString()}` },
    `${localFmt.format(d)} `, el("span", { class: "utc" }, `(${utcFmt.format(d)} UTC)`));
}

function duration(secs) {
  if (secs == null) return "—";
  const s = Math.abs(secs);
  if (s < 120) return `${Math.round(s)} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} days`;
}

function tokenInfo(address) {
  if (!address || address === ZERO) return { symbol: "ETH", decimals: 18 };
  if (app.deployment && app.deployment.token && address.toLowerCase() === app.deployment.token.toLowerCase()) {
    return { symbol: "TUSD", decimals: 6 };
  }
  return { symbol: `units of ${short(address)}`, decimals: 0 };
}

/** Base units (a decimal string) as token units, exact. */
function money(amount, token) {
  if (amount == null) return "—";
  const { symbol, decimals } = tokenInfo(token);
  const s = String(amount).padStart(decimals + 1, "0");
  const whole = s.slice(0, s.length - decimals) || "0";
  const frac = decimals ? s.slice(s.length - decimals).replace(/0+$/, "") : "";
  return `${BigInt(whole).toLocaleString("en-US")}${frac ? "." + frac.slice(0, 6) : ""} ${symbol}`;
}

/** An amount of an order's token; in base units when the policy withheld the terms. */
function amountOf(amount, terms) {
  return terms ? money(amount, terms.token) : `${BigInt(amount).toLocaleString("en-US")} base units (the token is in the withheld terms)`;
}

function short(address) {
  return address ? `${address.slice(0, 6)}…${address.slice(-4)}` : "—";
}

function who(address, withheld = false) {
  if (!address) return withheld ? withheldText() : el("span", { class: "muted" }, "—");
  const me = app.party && app.party.address.toLowerCase() === address.toLowerCase();
  return el("span", { class: "addr", title: address }, me ? `you (${short(address)})` : short(address));
}

/** A value the sharing policy held back (medium data across a border, no grant). */
function withheldText() {
  return el("span", { class: "muted withheld" }, "withheld by the sharing policy");
}

/** A device id as the answer gives it: the policy's pseudonym across a border. */
function deviceName(device) {
  if (typeof device === "string" && device.startsWith("pseudonym:")) return `pseudonym ${device.slice(10, 18)}`;
  return short(device);
}

/** Whether an answer's policy statement says positions were coarsened. */
function positionsCoarsened(body) {
  const reds = (body && body.policy && body.policy.redactions) || [];
  return reds.some((r) => r.action === "coarsened" && /(latitude|longitude)/.test(r.path));
}

function badge(state) {
  return el("span", { class: `badge state-${String(state).toLowerCase()}` }, state);
}

function riskBadge(score) {
  if (score == null) return el("span", { class: "muted" }, "—");
  const level = score >= 60 ? "high" : score >= 30 ? "medium" : "low";
  return el("span", { class: `risk risk-${level}`, title: `risk ${level}` }, Math.round(score));
}

function canWrite() {
  return app.party && !app.party.roles.includes("auditor");
}

function hasRole(...roles) {
  return app.party && roles.some((r) => app.party.roles.includes(r));
}

/** A write-action button: disabled (not pressable) with its reason when it does not apply. */
function actionButton(label, reason, run) {
  const why = !canWrite() ? "Read-only: auditors change nothing" : reason;
  const btn = el("button", { type: "button", class: "action", disabled: !!why, title: why || label, "aria-describedby": null }, label);
  if (why) btn.append(el("span", { class: "sr-only" }, ` (${why})`));
  btn.addEventListener("click", async () => {
    btn.disabled = true;
    try { await run(); } catch (err) { btn.after(errorBox(err, label.toLowerCase())); } finally { btn.disabled = false; }
  });
  return btn;
}

// ---- the alert stream (server-sent events over fetch: EventSource sends no headers) --

function startStream() {
  stopStream();
  const ctl = { abort: new AbortController(), lastId: null, stopped: false };
  app.stream = ctl;
  const live = document.getElementById("live");
  const connect = async () => {
    while (!ctl.stopped) {
      try {
        const url = ctl.lastId == null ? "/alerts/stream" : `/alerts/stream?after=${ctl.lastId}`;
        const r = await fetch(url, { headers: { "X-API-Key": app.key }, signal: ctl.abort.signal });
        if (!r.ok) throw new ApiError(r.status, await r.json().catch(() => null), "/alerts/stream");
        live.textContent = "live";
        live.className = "live on";
        const reader = r.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const frame = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            handleFrame(ctl, frame);
          }
        }
      } catch (err) {
        if (ctl.stopped) return;
        if (err.status === 401) return;
      }
      if (ctl.stopped) return;
      live.textContent = "reconnecting…";
      live.className = "live off";
      await new Promise((r) => setTimeout(r, 3000));
    }
  };
  connect();
}

function handleFrame(ctl, frame) {
  let event = "message", data = "", id = null;
  for (const line of frame.split("\n")) {
    if (line.startsWith(":")) continue;
    const i = line.indexOf(":");
    const field = i < 0 ? line : line.slice(0, i);
    const value = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
    if (field === "event") event = value;
    else if (field === "data") data += value;
    else if (field === "id") id = Number(value);
  }
  if (id != null) ctl.lastId = id;
  if (event !== "alert" || !data) return;
  const alert = JSON.parse(data);
  for (const fn of app.listeners) fn(alert);
}

function stopStream() {
  if (app.stream) { app.stream.stopped = true; app.stream.abort.abort(); app.stream = null; }
}

function onAlert(fn) {
  app.listeners.add(fn);
  return () => app.listeners.delete(fn);
}

// ---- health: chain and broker down banners ----------------------------------------

let healthTimer = null;
async function checkHealth() {
  const banner = document.getElementById("banner");
  let problems = [];
  try {
    const r = await fetch("/health");
    const h = await r.json();
    for (const [name, c] of Object.entries(h.components || {})) {
      if (c.status === "down" || c.status === "error") {
        const label = name === "broker" ? "The MQTT broker is down: live telemetry stops arriving"
          : name === "chain" ? "The chain is down: nothing can be proven or settled until it is back"
          : `${name} is ${c.status}`;
        problems.push(`${label}${c.detail ? ` (${c.detail})` : ""}.`);
      }
    }
  } catch (exc) {
    problems = [`The API is not answering (${exc.message}).`];
  }
  banner.hidden = !problems.length;
  banner.replaceChildren(...problems.map((p) => el("p", {}, p)));
}

// ---- sign-in ----------------------------------------------------------------------

function showSignIn(message) {
  if (app.cleanup) { app.cleanup(); app.cleanup = null; }
  document.getElementById("nav").hidden = true;
  document.getElementById("who").hidden = true;
  const main = document.getElementById("main");
  main.replaceChildren(document.getElementById("sign-in").content.cloneNode(true));
  const form = document.getElementById("sign-in-form");
  const error = document.getElementById("sign-in-error");
  if (message) { error.hidden = false; error.replaceChildren(message); }
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    app.key = document.getElementById("api-key").value.trim();
    try {
      await signIn();
    } catch (err) {
      app.key = null;
      error.hidden = false;
      error.replaceChildren(errorBox(err, "your account"));
    }
  });
  document.getElementById("api-key").focus();
}

async function signIn() {
  // the deployment (public) names the dev stablecoin, for amounts: asked beside the account
  const deployment = fetch("/deployment").then((r) => (r.ok ? r.json() : null)).catch(() => null);
  const account = await api("/account");
  app.deployment = await deployment;
  app.party = account.party;
  sessionStorage.setItem(KEY_STORAGE, app.key);
  document.getElementById("who-name").textContent = `${app.party.name} (${app.party.roles.join(", ")})`;
  document.getElementById("who").hidden = false;
  const nav = document.getElementById("nav");
  nav.hidden = false;
  for (const li of nav.querySelectorAll("[data-role]")) li.hidden = !hasRole(...li.dataset.role.split(" "));
  startStream();
  route();
  checkHealth();
  clearInterval(healthTimer);
  healthTimer = setInterval(checkHealth, 10000);
  detectGrants();
}

function signOut(err) {
  stopStream();
  clearInterval(healthTimer);
  sessionStorage.removeItem(KEY_STORAGE);
  app.key = null;
  app.party = null;
  showSignIn(err ? errorBox(err, "your account") : null);
}

/** The grants view appears once the API has the sharing policy's `/grants` routes. */
async function detectGrants() {
  try {
    const r = await fetch("/openapi.json");
    const doc = await r.json();
    document.getElementById("nav-grants").hidden = !("/grants" in (doc.paths || {}));
  } catch { /* no grants view */ }
}

// ---- routing ----------------------------------------------------------------------

const VIEWS = {
  orders: ordersView,
  order: orderView,
  alerts: alertsView,
  suppliers: suppliersView,
  disputes: disputesView,
  grants: grantsView,
};

function route() {
  if (!app.party) return;
  if (app.cleanup) { app.cleanup(); app.cleanup = null; }
  const parts = (location.hash.replace(/^#\/?/, "") || "orders").split("/");
  let name = parts[0];
  const arg = parts[1];
  if (name === "orders" && arg) name = "order";
  const view = VIEWS[name] || ordersView;
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.view === (name === "order" ? "orders" : name)) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const main = document.getElementById("main");
  const section = el("section", { class: `view view-${name}`, "data-view": name });
  main.replaceChildren(section);
  app.cleanup = view(section, arg) || null;
}

window.addEventListener("hashchange", () => { route(); document.getElementById("main").focus({ preventScroll: true }); });
document.getElementById("sign-out").addEventListener("click", () => signOut());

// ---- orders -----------------------------------------------------------------------

function ordersView(root) {
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const filters = { state: params.get("state") || "", role: params.get("role") || "", text: "", offset: 0 };
  const stateSel = el("select", { id: "f-state", name: "state" }, el("option", { value: "" }, "any state"),
    STATES.map((s) => el("option", { value: s, selected: s === filters.state }, s)));
  const roleSel = el("select", { id: "f-role", name: "role" }, el("option", { value: "" }, "any role"),
    ["buyer", "supplier", "arbiter"].map((r) => el("option", { value: r, selected: r === filters.role }, `I am ${r}`)));
  const text = el("input", { id: "f-text", type: "search", placeholder: "id or address" });
  const tbody = el("tbody");
  const table = el("table", { class: "orders", "data-testid": "orders-table", "aria-busy": "true" },
    el("caption", { class: "sr-only" }, "Orders visible to you"),
    el("thead", {}, el("tr", {}, ["Order", "State", "Buyer", "Supplier", "Value", "Risk", "Deadline"].map((h) => el("th", { scope: "col" }, h)))),
    tbody);
  const status = el("p", { class: "muted", role: "status", "aria-live": "polite" });
  const prev = el("button", { type: "button", disabled: true }, "Previous page");
  const next = el("button", { type: "button", disabled: true }, "Next page");
  const holder = el("div", { class: "table-wrap" }, table);
  root.append(
    el("h2", {}, "Orders"),
    el("form", { class: "filters", role: "search", onsubmit: (e) => e.preventDefault() },
      el("label", { for: "f-state" }, "State"), stateSel,
      el("label", { for: "f-role" }, "Role"), roleSel,
      el("label", { for: "f-text" }, "Find"), text),
    status, holder, el("div", { class: "pager" }, prev, next));
  let gen = 0;
  let lastDrawn = null;
  const risks = new Map();

  async function load() {
    const my = ++gen;
    const q = new URLSearchParams({ limit: PAGE, offset: filters.offset });
    if (filters.state) q.append("state", filters.state);
    if (filters.role) q.set("role", filters.role);
    let page;
    try {
      page = await api(`/orders?${q}`);
    } catch (err) {
      if (my !== gen) return;
      holder.replaceChildren(errorBox(err, "the orders"));
      lastDrawn = null;
      table.setAttribute("aria-busy", "false");
      return;
    }
    if (my !== gen) return;
    if (!holder.contains(table)) holder.replaceChildren(table);
    showPolicy(root, page);
    const needle = filters.text.toLowerCase();
    const rows = page.data.filter((o) => !needle || String(o.id) === needle || (o.buyer || "").toLowerCase().includes(needle) || (o.supplier || "").toLowerCase().includes(needle));
    // redrawn only when something changed: a refresh must not take the keyboard focus away
    const drawn = JSON.stringify([page.count, filters.offset, rows.map((o) => [o.id, o.state, o.updated_block])]);
    const redraw = drawn !== lastDrawn;
    lastDrawn = drawn;
    if (redraw) {
      tbody.replaceChildren(...rows.map((o) => el("tr", { "data-order": o.id, "data-state": o.state },
        el("td", {}, el("a", { href: `#/orders/${o.id}` }, `#${o.id}`)),
        el("td", {}, badge(o.state)),
        el("td", {}, who(o.buyer, true)),
        el("td", {}, who(o.supplier, true)),
        el("td", { class: "num" }, o.terms ? money(o.terms.price, o.terms.token) : withheldText()),
        el("td", { class: "num", "data-risk": o.id }, risks.has(o.id) ? riskBadge(risks.get(o.id)) : (o.state === "Shipped" ? "…" : el("span", { class: "muted" }, "—"))),
        el("td", {}, o.terms ? when(o.terms.delivery_deadline) : withheldText()))));
      if (!rows.length) {
        tbody.append(el("tr", {}, el("td", { colspan: 7, class: "empty", "data-testid": "empty" },
          page.count ? "No order on this page matches the search." : "No orders yet: none that you are a party to.")));
      }
    }
    status.textContent = page.count ? `${filters.offset + 1}–${filters.offset + page.data.length} of ${page.count} orders` : "";
    prev.disabled = filters.offset === 0;
    next.disabled = filters.offset + PAGE >= page.count;
    table.setAttribute("aria-busy", "false");
    table.dataset.ready = "true";
    if (!performance.getEntriesByName("orders-filled").length) performance.mark("orders-filled");
    // the risk scores of the shipments in transit, after the table is painted
    for (const o of page.data.filter((x) => x.state === "Shipped")) {
      api(`/orders/${o.id}/risk?history=0`).then((r) => {
        risks.set(o.id, r.score);
        const cell = tbody.querySelector(`[data-risk="${o.id}"]`);
        if (cell) cell.replaceChildren(riskBadge(r.score));
      }).catch(() => {});
    }
  }
  stateSel.addEventListener("change", () => { filters.state = stateSel.value; filters.offset = 0; load(); });
  roleSel.addEventListener("change", () => { filters.role = roleSel.value; filters.offset = 0; load(); });
  text.addEventListener("input", () => { filters.text = text.value.trim(); load(); });
  prev.addEventListener("click", () => { filters.offset = Math.max(0, filters.offset - PAGE); load(); });
  next.addEventListener("click", () => { filters.offset += PAGE; load(); });
  load();
  const timer = setInterval(load, 5000);
  let pending = null;
  const off = onAlert(() => { clearTimeout(pending); pending = setTimeout(load, 500); });
  return () => { clearInterval(timer); clearTimeout(pending); off(); gen++; };
}

// ---- one shipment -----------------------------------------------------------------

function panel(title, id, ...children) {
  return el("section", { class: "panel", id, "aria-labelledby": `${id}-h` }, el("h3", { id: `${id}-h` }, title), ...children);
}

function orderView(root, idText) {
  const id = Number(idText);
  const head = el("div", { class: "order-head" }, el("h2", {}, `Order #${id}`));
  const actions = el("div", { class: "actions", role: "group", "aria-label": "Actions on this order" });
  const risk = panel("Risk", "risk");
  const charts = panel("Telemetry", "telemetry", el("p", { class: "muted" }, "Loading readings…"));
  const map = panel("Route", "route");
  const alerts = panel("Alerts", "alerts");
  const settlement = panel("Settlement", "settlement");
  const chain = panel("On-chain transactions", "chain");
  // shown once an answer is refused by the sharing policy (a party in another jurisdiction)
  const access = panel("Data access", "access");
  access.hidden = true;
  root.append(el("p", {}, el("a", { href: "#/orders" }, "← All orders")), head, actions, access,
    el("div", { class: "grid" }, charts, map, risk, alerts, settlement, chain));

  const s = { order: null, readings: new Map(), lastTs: null, events: [], chart: null, stopped: false, mapDraw: null, coarsened: false, refused: false };
  const readingsKey = (r) => `${r.device}:${r.seq}`;

  async function loadOrder() {
    try {
      s.order = await api(`/orders/${id}`);
    } catch (err) {
      root.replaceChildren(el("p", {}, el("a", { href: "#/orders" }, "← All orders")), errorBox(err, `order #${id}`));
      s.stopped = true;
      return false;
    }
    const o = s.order;
    showPolicy(root, o);
    // redrawn only when the order changed (keeps the keyboard focus on its actions)
    const drawn = JSON.stringify(o);
    if (drawn === s.drawn) return true;
    s.drawn = drawn;
    const t = o.terms;
    head.replaceChildren(el("h2", {}, `Order #${o.id} `, badge(o.state)),
      el("dl", { class: "facts" },
        el("dt", {}, "Buyer"), el("dd", {}, who(o.buyer, true)),
        el("dt", {}, "Supplier"), el("dd", {}, who(o.supplier, true)),
        el("dt", {}, "Arbiter"), el("dd", {}, who(o.arbiter, true)),
        el("dt", {}, "Value"), el("dd", {}, t ? money(t.price, t.token) : withheldText()),
        el("dt", {}, "Range"), el("dd", {}, t ? `${t.min_temp_centi_c / 100}–${t.max_temp_centi_c / 100} °C, ${duration(t.tolerated_excursion_secs)} tolerated` : withheldText()),
        el("dt", {}, "Deadline"), el("dd", {}, t ? when(t.delivery_deadline) : withheldText()),
        el("dt", {}, "Shipped"), el("dd", {}, when(o.shipped_at)),
        el("dt", {}, "Delivered"), el("dd", {}, when(o.delivered_at), o.late_seconds ? ` (${duration(o.late_seconds)} late)` : "")));
    renderActions();
    return true;
  }

  function renderActions() {
    const o = s.order;
    const me = app.party.address.toLowerCase();
    const isBuyer = (o.buyer || "").toLowerCase() === me, isSupplier = (o.supplier || "").toLowerCase() === me;
    const post = (path, body) => async () => { await api(`/orders/${o.id}/${path}`, { method: "POST", body }); refresh(); };
    actions.replaceChildren(
      actionButton("Confirm receipt", !isBuyer ? "Only the buyer confirms receipt" : o.state !== "Shipped" ? `The order is ${o.state}` : null, post("confirm-receipt")),
      actionButton("Open dispute", !(isBuyer || isSupplier) ? "Only the buyer or the supplier opens a dispute" : o.state !== "Delivered" ? `The order is ${o.state}` : null, post("dispute")),
      actionButton("Settle", o.state !== "Delivered" ? `The order is ${o.state}` : null, post("settle")),
      actionButton("Cancel", !(isBuyer || isSupplier) ? "Only the buyer or the supplier cancels" : !["Created", "Accepted", "Funded"].includes(o.state) ? `The order is ${o.state}` : null, post("cancel")));
  }

  async function loadTelemetry() {
    try {
      for (let guard = 0; guard < 20; guard++) {
        const q = new URLSearchParams({ limit: 1000 });
        if (s.lastTs != null) q.set("since", s.lastTs);
        const page = await api(`/orders/${id}/telemetry?${q}`);
        // the statement of the last page that had one (a page with no new reading has none)
        if (policyNotes(page).length) s.telemetryPolicy = page;
        if (positionsCoarsened(page)) s.coarsened = true;
        let added = 0;
        for (const r of page.data) {
          if (!s.readings.has(readingsKey(r))) { s.readings.set(readingsKey(r), r); added++; }
          s.lastTs = Math.max(s.lastTs ?? 0, r.timestamp);
        }
        if (page.data.length < 1000 || !added) break;
      }
    } catch (err) {
      charts.replaceChildren(charts.firstChild, errorBox(err, "the telemetry"));
      if (err.code === "policy_refused") {
        charts.append(el("p", { "data-testid": "request-hint" }, "The readings are another jurisdiction's medium data: ",
          el("a", { href: "#access", onclick: (ev) => { ev.preventDefault(); access.querySelector("textarea, button")?.focus(); } }, "request access"),
          " from the order's data owner (Data access, above)."));
        showAccess();
      }
      map.replaceChildren(map.firstChild, el("p", { class: "empty" }, err.code === "policy_refused" ? "No route: positions come with the readings, which are not shared with you." : "No route: the readings could not be loaded."));
      s.mapDraw = null;
      return;
    }
    if (!s.order.terms) {
      charts.replaceChildren(charts.firstChild, el("p", { class: "empty" }, "The readings came, but the order's terms (its limits and destination) are withheld: nothing to draw them against."));
      return;
    }
    await drawCharts();
    showPolicy(charts, s.telemetryPolicy);
    drawMap();
  }

  async function loadEvents() {
    try {
      const page = await api(`/orders/${id}/events`);
      s.events = page.data;
      showPolicy(chain, page);
      fill(chain, chain.firstChild, s.events.length ? el("ol", { class: "events" }, s.events.map((e) => el("li", {},
        el("strong", {}, e.event), " ", when(e.block_timestamp), el("br"),
        el("span", { class: "muted" }, `block ${e.block_number} · tx `), el("code", { title: e.tx_hash }, short(e.tx_hash))))) : el("p", { class: "empty" }, "No transactions yet."));
    } catch (err) {
      chain.replaceChildren(chain.firstChild, errorBox(err, "the chain events"));
    }
    const proven = s.events.filter((e) => e.event === "ExcursionProven" && e.args);
    let box = charts.querySelector("[data-testid=breach-window]");
    if (proven.length) {
      if (!box) { box = el("div", { class: "breach", "data-testid": "breach-window", role: "status" }); charts.append(box); }
      box.replaceChildren(...proven.map((e) => el("p", {}, el("strong", {}, "Breach proven on chain: "),
        `device ${short(e.args.device)}, readings #${e.args.firstSeq}–#${e.args.lastSeq}, from `, when(e.args.startedAt), " to ", when(e.args.endedAt),
        ` (${duration(e.args.endedAt - e.args.startedAt)})`)));
      if (s.chart) s.chart.redraw();
    }
  }

  async function loadRisk() {
    try {
      const r = await api(`/orders/${id}/risk?history=0`);
      showPolicy(risk, r);
      fill(risk, risk.firstChild,
        el("p", { class: "score" }, "Score ", riskBadge(r.score), r.at ? [" at ", when(r.at)] : " (no reading assessed yet)"),
        r.breach_in_secs != null ? el("p", {}, `Breach expected in about ${duration(r.breach_in_secs)}`) : null,
        r.eta ? el("p", {}, "ETA ", when(r.eta.timestamp), ` (confidence ${Math.round(r.eta.confidence * 100)} %, ${r.eta.remaining_km.toFixed(0)} km to go${r.eta.late_secs > 0 ? `, ${duration(r.eta.late_secs)} late` : ""})`) : null,
        r.reasons.length ? el("ul", { class: "reasons" }, r.reasons.map((x) => el("li", {}, `${x.text} (+${x.points.toFixed(0)})`))) : null);
    } catch (err) {
      risk.replaceChildren(risk.firstChild, errorBox(err, "the risk score"));
    }
  }

  async function loadAlerts() {
    try {
      const page = await api(`/orders/${id}/alerts?limit=100`);
      showPolicy(alerts, page);
      alerts.replaceChildren(alerts.firstChild, page.data.length ? alertList(page.data) : el("p", { class: "empty" }, "No alerts."));
    } catch (err) {
      alerts.replaceChildren(alerts.firstChild, errorBox(err, "the alerts"));
    }
  }

  async function loadSettlement() {
    const o = s.order;
    let split = o.settlement, preview = null;
    try {
      if (!split && !["Cancelled", "Expired"].includes(o.state)) {
        const at = o.delivered_at || Math.max(Math.floor(Date.now() / 1000), o.shipped_at || 0);
        preview = await api(`/orders/${id}/settlement-preview?delivered_at=${at}`);
        split = preview;
      }
    } catch (err) {
      settlement.replaceChildren(settlement.firstChild, errorBox(err, "the settlement preview"));
      return;
    }
    if (!split) { settlement.replaceChildren(settlement.firstChild, el("p", { class: "empty" }, `No settlement: the order is ${o.state}.`)); return; }
    const b = BigInt(split.buyer_amount), p = BigInt(split.supplier_amount);
    const total = b + p || 1n;
    const buyerPct = Number((b * 10000n) / total) / 100;
    fill(settlement, settlement.firstChild,
      el("p", { "data-testid": preview ? "settlement-preview" : "settlement" },
        el("strong", {}, preview ? "Preview if delivered now" : "Settled on chain"),
        preview ? ` (breach ${preview.breach ? "recorded" : "not recorded"}, late penalty ${preview.late_penalty_bps / 100} %)` : ""),
      el("div", { class: "split", role: "img", "aria-label": `buyer ${buyerPct} %, supplier ${100 - buyerPct} %` },
        el("span", { class: "split-buyer", style: `width:${buyerPct}%` }), el("span", { class: "split-supplier", style: `width:${100 - buyerPct}%` })),
      el("dl", { class: "facts" },
        el("dt", {}, "To the buyer"), el("dd", {}, `${amountOf(split.buyer_amount, o.terms)} (${buyerPct} %)`),
        el("dt", {}, "To the supplier"), el("dd", {}, `${amountOf(split.supplier_amount, o.terms)} (${(100 - buyerPct).toFixed(2).replace(/\.00$/, "")} %)`)));
  }

  async function drawCharts() {
    const o = s.order;
    const all = [...s.readings.values()].sort((a, b) => a.timestamp - b.timestamp);
    if (!all.length) { charts.replaceChildren(charts.firstChild, el("p", { class: "empty" }, "No readings yet."), ...charts.querySelectorAll("[data-testid=breach-window]")); return; }
    let uPlot;
    try {
      uPlot = (await import("/vendor/uPlot.esm.js")).default;
    } catch (exc) {
      charts.replaceChildren(charts.firstChild, el("div", { class: "error", role: "alert" }, "The chart library (uPlot) is missing: the server's WEB_VENDOR_DIR has no uplot package (run `make setup`)."));
      return;
    }
    const devices = [...new Set(all.map((r) => r.device))];
    const times = [...new Set(all.map((r) => r.timestamp))].sort((a, b) => a - b);
    const index = new Map(times.map((t, i) => [t, i]));
    const series = (field, scale) => devices.map((d) => {
      const ys = new Array(times.length).fill(null);
      for (const r of all) if (r.device === d) ys[index.get(r.timestamp)] = r[field] / scale;
      return ys;
    });
    const lo = o.terms.min_temp_centi_c / 100, hi = o.terms.max_temp_centi_c / 100;
    const colors = ["#1f6feb", "#8250df", "#0a7f5a", "#bf3989"];
    const breachWindows = () => s.events.filter((e) => e.event === "ExcursionProven").map((e) => [e.args.startedAt, e.args.endedAt]);
    const excursions = () => {
      const spans = [];
      for (const d of devices) {
        let start = null, prevT = null;
        for (const r of all) {
          if (r.device !== d) continue;
          const t = r.temperature_centi_c / 100;
          const out = t < lo || t > hi;
          if (out && start == null) start = r.timestamp;
          if (!out && start != null) { spans.push([start, prevT]); start = null; }
          prevT = r.timestamp;
        }
        if (start != null) spans.push([start, prevT]);
      }
      return spans;
    };
    const shade = (u, spans, color) => {
      const { ctx, bbox } = u;
      ctx.save();
      ctx.fillStyle = color;
      for (const [a, b] of spans) {
        const x0 = u.valToPos(a, "x", true), x1 = u.valToPos(b, "x", true);
        ctx.fillRect(x0, bbox.top, Math.max(2, x1 - x0), bbox.height);
      }
      ctx.restore();
    };
    const width = Math.max(280, charts.clientWidth - 24);
    const tzDate = (ts) => new Date(ts * 1000);
    const make = (title, field, scale, unit, limits, withShading) => {
      const data = [times, ...series(field, scale), ...limits.map((v) => times.map(() => v))];
      const opts = {
        title, width, height: withShading ? 240 : 140, tzDate,
        scales: { x: { time: true } },
        axes: [{}, { label: unit, size: 50 }],
        series: [{ label: "time", value: (u, v) => (v == null ? "—" : new Date(v * 1000).toISOString().replace("T", " ").slice(0, 16) + " UTC") },
          ...devices.map((d, i) => ({ label: deviceName(d), stroke: colors[i % colors.length], width: 1.5, spanGaps: true })),
          ...limits.map((v) => ({ label: `limit ${v} ${unit}`, stroke: "#cf222e", dash: [6, 4], width: 1, points: { show: false } }))],
        hooks: withShading ? { drawClear: [(u) => { shade(u, s.excursions, "rgba(255,140,0,0.18)"); shade(u, breachWindows(), "rgba(207,34,46,0.28)"); }] } : {},
      };
      return { data, opts };
    };
    s.excursions = excursions();
    const specs = [make("Temperature (°C): excursions orange, proven breach red", "temperature_centi_c", 100, "°C", [lo, hi], true)];
    if (o.terms.max_humidity_permille) specs.push(make("Humidity (%)", "humidity_permille", 10, "%", [o.terms.max_humidity_permille / 10], false));
    else specs.push(make("Humidity (%)", "humidity_permille", 10, "%", [], false));
    specs.push(make("Shock (g)", "shock_milli_g", 1000, "g", o.terms.max_shock_milli_g ? [o.terms.max_shock_milli_g / 1000] : [], false));
    if (!s.chart) {
      const holder = el("div", { class: "charts", "data-testid": "chart", role: "img", "aria-label": "Temperature, humidity and shock over time with the limits" });
      charts.replaceChildren(charts.firstChild, holder, ...charts.querySelectorAll("[data-testid=breach-window]"));
      s.plots = specs.map((sp) => new uPlot(sp.opts, sp.data, holder.appendChild(el("div"))));
      s.chart = s.plots[0];
    } else {
      s.plots.forEach((p, i) => p.setData(specs[i].data));
    }
    const latest = all[all.length - 1];
    let summary = charts.querySelector(".latest");
    if (!summary) { summary = el("p", { class: "latest", "aria-live": "polite" }); charts.insertBefore(summary, charts.children[1]); }
    fill(summary, `${all.length} readings; latest `, el("strong", { "data-testid": "latest-temp" }, `${(latest.temperature_centi_c / 100).toFixed(2)} °C`), ` at `, when(latest.timestamp),
      "; devices ", el("span", { "data-testid": "devices" }, devices.map((d) => el("code", { title: d }, deviceName(d))).flatMap((c, i) => (i ? [", ", c] : [c]))));
  }

  async function drawMap() {
    const o = s.order;
    if (!s.mapDraw) {
      const canvas = el("canvas", { width: 600, height: 360, role: "img", "aria-label": "Map of the route, the last position and the destination geofence", "data-testid": "map" });
      const legend = el("p", { class: "muted" });
      map.replaceChildren(map.firstChild, canvas, legend);
      let world = null;
      try {
        world = topoToPolygons(await (await fetchOk("/vendor/countries-110m.json")).json());
      } catch {
        legend.before(el("p", { class: "error", role: "alert" }, "The world map (world-atlas) is missing on the server (WEB_VENDOR_DIR); the route is drawn without it."));
      }
      s.mapDraw = () => renderMap(canvas, legend, world, s.order, [...s.readings.values()].sort((a, b) => a.timestamp - b.timestamp), s.coarsened);
    }
    s.mapDraw();
    let note = map.querySelector("[data-testid=coarsened]");
    if (s.coarsened && !note) {
      note = el("p", { class: "policy", role: "note", "data-testid": "coarsened" }, "Positions coarsened to a region by the sharing policy (whole degrees): the route and the last position are approximate.");
      map.querySelector("canvas").before(note);
      map.querySelector("canvas").setAttribute("aria-label", "Map of the route (positions coarsened to a region by the sharing policy), the last position and the destination geofence");
    }
  }

  // ---- data access: a party elsewhere asks the data owner for a grant (docs/sharing.md)
  const reasonId = `access-reason-${id}`;
  const reason = el("textarea", { id: reasonId, rows: 2, maxlength: 1000, required: true, "aria-describedby": `${reasonId}-help` });
  const askStatus = el("p", { class: "muted", role: "status", "aria-live": "polite", id: `${reasonId}-status` });
  const ask = el("button", { type: "button", class: "action", "aria-describedby": `${reasonId}-status` }, "Request access");
  const mine = el("div", { "data-testid": "my-requests" });
  function showAccess() {
    if (!access.hidden) return;
    access.hidden = false;
    const where = app.party.jurisdiction ? ` (you read from ${app.party.jurisdiction})` : "";
    access.append(
      el("p", { "data-testid": "access-refused" }, `This order's medium data (its terms, readings, positions and risk) belongs to parties in another jurisdiction${where}. `,
        "The sharing policy releases it across a border only under a grant that the supplier or the buyer approves; what it releases is logged, positions come coarsened to a region and device ids as pseudonyms."),
      el("div", { class: "request" },
        el("label", { for: reasonId }, "Reason for the request"),
        el("span", { id: `${reasonId}-help`, class: "muted" }, "The data owner reads it when deciding (required, up to 1,000 characters)."),
        reason, ask, askStatus),
      el("h4", {}, "Your requests for this order"), mine);
    loadAccess();
    s.accessTimer = setInterval(loadAccess, 3000);
  }
  ask.addEventListener("click", async () => {
    const text = reason.value.trim();
    askStatus.replaceChildren();
    if (!text) { askStatus.replaceChildren(el("span", { class: "error", role: "alert" }, "Say why you need the data: the reason is required.")); reason.focus(); return; }
    ask.disabled = true;
    try {
      const g = await api(`/orders/${id}/grants`, { method: "POST", body: { sensitivity: "medium", reason: text } });
      reason.value = "";
      askStatus.textContent = `Request #${g.id} sent: the data owner decides.`;
    } catch (err) {
      askStatus.replaceChildren(errorBox(err, "the request"));
    } finally {
      ask.disabled = false;
      loadAccess();
    }
  });
  async function loadAccess() {
    if (s.stopped) return;
    let page;
    try {
      page = await api("/grants?limit=500");
    } catch (err) {
      mine.replaceChildren(errorBox(err, "your requests"));
      s.grantsDrawn = null;
      return;
    }
    const me = app.party.address.toLowerCase();
    const list = page.data.filter((g) => g.order_id === id && g.grantee_address.toLowerCase() === me);
    const drawn = JSON.stringify(list);
    if (drawn === s.grantsDrawn) return;
    s.grantsDrawn = drawn;
    const pending = list.some((g) => g.state === "requested");
    const open = list.find((g) => g.state === "approved");
    const why = pending ? "Your request is pending with the data owner" : open ? `Your grant #${open.id} is approved: the data is shared with you` : null;
    ask.disabled = !!why;
    reason.disabled = !!why;
    ask.title = why || "Ask the data owner for this order's medium data";
    ask.querySelector(".sr-only")?.remove();
    if (why) ask.append(el("span", { class: "sr-only" }, ` (${why})`));
    if (!pending) askStatus.replaceChildren();
    // granted: the explanation and the form make way for the data
    for (const part of access.querySelectorAll("[data-testid=access-refused], .request")) part.hidden = !!open;
    fill(mine, list.length ? grantList(list) : el("p", { class: "empty", "data-testid": "empty" }, "You have not asked for this order's data yet."));
    // an approval releases the data: read everything again
    const approved = list.some((g) => g.state === "approved");
    if (approved && !s.granted) { s.granted = true; refresh(); }
    if (!approved) s.granted = false;
  }

  async function refresh() {
    if (s.stopped) return;
    if (!(await loadOrder())) return;
    await Promise.all([loadEvents(), loadRisk(), loadAlerts(), loadSettlement(), loadTelemetry()]);
  }

  refresh();
  let pending = null;
  const off = onAlert((a) => { if (a.order_id === id) { clearTimeout(pending); pending = setTimeout(refresh, 200); } });
  // readings and settlement have no alert of their own: poll while the order moves
  // (and once more after the order became final, for readings still on their way)
  let after = 0;
  const timer = setInterval(() => {
    if (s.order && (!FINAL.has(s.order.state) || after++ < 2)) refresh();
  }, 2000);
  return () => { s.stopped = true; clearInterval(timer); clearInterval(s.accessTimer); clearTimeout(pending); off(); };
}

/** A grant's state in words. */
function grantState(g) {
  if (g.state === "approved") return ["approved until ", when(g.expires_at), g.decided_as ? ` (by the ${g.decided_as}${g.decided_as === "buyer" ? ": the agreement's data only" : ""})` : ""];
  if (g.state === "denied") return ["denied", g.decision_reason ? `: ${g.decision_reason}` : ""];
  if (g.state === "revoked") return ["revoked ", when(g.revoked_at)];
  if (g.state === "expired") return ["expired ", when(g.expires_at)];
  return "pending with the data owner";
}

/** A party's own requests, newest first. */
function grantList(list) {
  return el("ul", { class: "grants" }, list.map((g) => el("li", { "data-grant": g.id, "data-state": g.state },
    el("strong", {}, `#${g.id}`), " ", el("a", { href: `#/orders/${g.order_id}` }, `order #${g.order_id}`), ` · ${g.sensitivity} data · asked `, when(g.requested_at), " · ",
    el("span", { class: `grant-state grant-${g.state}` }, grantState(g)),
    el("p", { class: "muted" }, `Reason: ${g.reason}`))));
}

async function fetchOk(path) {
  const r = await fetch(path);
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r;
}

function alertList(list) {
  return el("ol", { class: "alerts", "data-testid": "alert-list" }, list.map((a) => {
    const lead = a.data && a.data.lead_secs != null ? ` · lead time ${duration(a.data.lead_secs)}` : "";
    const reasons = a.data && Array.isArray(a.data.reasons) ? a.data.reasons : [];
    return el("li", { class: `alert sev-${a.severity}`, "data-kind": a.kind, "data-alert": a.id },
      el("span", { class: "kind" }, a.kind.replaceAll("_", " ")), " ",
      el("a", { href: `#/orders/${a.order_id}` }, `order #${a.order_id}`), " · ", when(a.at),
      el("span", { class: "muted" }, ` · ${a.severity}${lead}`),
      el("p", {}, a.message),
      reasons.length ? el("ul", { class: "reasons" }, reasons.map((r) => el("li", {}, typeof r === "string" ? r : r.text || JSON.stringify(r)))) : null);
  }));
}

// ---- the map: TopoJSON decoded here (delta-encoded quantized arcs), equirectangular --

/** world-atlas TopoJSON → list of rings ([[lon, lat]…]) of every country. */
export function topoToPolygons(topo) {
  const [sx, sy] = topo.transform ? topo.transform.scale : [1, 1];
  const [tx, ty] = topo.transform ? topo.transform.translate : [0, 0];
  const arcs = topo.arcs.map((arc) => {
    let x = 0, y = 0;
    return arc.map(([dx, dy]) => { x += dx; y += dy; return [x * sx + tx, y * sy + ty]; });
  });
  const ring = (indexes) => {
    const out = [];
    for (const i of indexes) {
      const a = i < 0 ? arcs[~i].slice().reverse() : arcs[i];
      out.push(...(out.length ? a.slice(1) : a));
    }
    return out;
  };
  const rings = [];
  const walk = (g) => {
    if (g.type === "GeometryCollection") g.geometries.forEach(walk);
    else if (g.type === "Polygon") g.arcs.forEach((r) => rings.push(ring(r)));
    else if (g.type === "MultiPolygon") g.arcs.forEach((p) => p.forEach((r) => rings.push(ring(r))));
  };
  Object.values(topo.objects).forEach(walk);
  return rings;
}

function renderMap(canvas, legend, world, order, readings, coarsened = false) {
  const ratio = window.devicePixelRatio || 1;
  const cssW = Math.max(260, canvas.parentElement.clientWidth - 24);
  const cssH = Math.round(cssW * 0.6);
  canvas.style.width = `${cssW}px`;
  canvas.style.height = `${cssH}px`;
  canvas.width = cssW * ratio;
  canvas.height = cssH * ratio;
  const ctx = canvas.getContext("2d");
  ctx.scale(ratio, ratio);
  const dest = [order.terms.dest_lon_e6 / 1e6, order.terms.dest_lat_e6 / 1e6];
  const half = order.terms.geofence_e6 / 1e6;
  const pts = readings.map((r) => [r.longitude_e6 / 1e6, r.latitude_e6 / 1e6]);
  const all = [...pts, dest];
  let [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  const pad = Math.max(4, (x1 - x0) * 0.25, (y1 - y0) * 0.25);
  x0 -= pad; x1 += pad; y0 -= pad; y1 += pad;
  const k = Math.min(cssW / (x1 - x0), cssH / (y1 - y0));
  const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
  const px = ([lon, lat]) => [cssW / 2 + (lon - cx) * k, cssH / 2 - (lat - cy) * k];
  ctx.fillStyle = "#dbe9f6";
  ctx.fillRect(0, 0, cssW, cssH);
  if (world) {
    ctx.fillStyle = "#f4f1ea";
    ctx.strokeStyle = "#b8b2a6";
    ctx.lineWidth = 0.5;
    for (const ring of world) {
      ctx.beginPath();
      ring.forEach((p, i) => { const [x, y] = px(p); if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y); });
      ctx.closePath();
      ctx.fill();
      ctx.stroke();
    }
  }
  // the destination geofence: the terms' box of half side geofence_e6
  const [gx0, gy0] = px([dest[0] - half, dest[1] + half]);
  const [gx1, gy1] = px([dest[0] + half, dest[1] - half]);
  ctx.fillStyle = "rgba(10,127,90,0.25)";
  ctx.strokeStyle = "#0a7f5a";
  ctx.lineWidth = 2;
  const gw = Math.max(6, gx1 - gx0), gh = Math.max(6, gy1 - gy0);
  ctx.fillRect((gx0 + gx1 - gw) / 2, (gy0 + gy1 - gh) / 2, gw, gh);
  ctx.strokeRect((gx0 + gx1 - gw) / 2, (gy0 + gy1 - gh) / 2, gw, gh);
  if (pts.length) {
    ctx.strokeStyle = "#1f6feb";
    ctx.lineWidth = 2;
    ctx.beginPath();
    pts.forEach((p, i) => { const [x, y] = px(p); if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y); });
    ctx.stroke();
    const [lx, ly] = px(pts[pts.length - 1]);
    ctx.fillStyle = "#cf222e";
    ctx.beginPath();
    ctx.arc(lx, ly, 6, 0, Math.PI * 2);
    ctx.fill();
  }
  const last = readings[readings.length - 1];
  fill(legend,
    "Blue: the route; red: the last position",
    last ? [" (", coarsened ? `the region of ${(last.latitude_e6 / 1e6).toFixed(0)}°, ${(last.longitude_e6 / 1e6).toFixed(0)}°` : `${(last.latitude_e6 / 1e6).toFixed(4)}, ${(last.longitude_e6 / 1e6).toFixed(4)}`, " at ", when(last.timestamp), ")"] : " (none yet)",
    `; green: the destination geofence (±${half}° around ${dest[1].toFixed(3)}, ${dest[0].toFixed(3)}).`);
}

// ---- alerts, suppliers, disputes --------------------------------------------------

function alertsView(root) {
  const holder = el("div");
  root.append(el("h2", {}, "Alerts"), el("p", { class: "muted" }, "Alerts on your orders, newest first; new ones arrive live."), holder);
  let gen = 0;
  async function load() {
    const my = ++gen;
    try {
      const page = await api("/alerts?limit=100");
      if (my !== gen) return;
      showPolicy(root, page);
      holder.replaceChildren(page.data.length ? alertList(page.data) : el("p", { class: "empty", "data-testid": "empty" }, "No alerts on your orders."));
    } catch (err) {
      holder.replaceChildren(errorBox(err, "the alerts"));
    }
  }
  load();
  const off = onAlert(() => load());
  return () => { off(); gen++; };
}

function pct(bps) {
  return bps == null ? "—" : `${(bps / 100).toFixed(1)} %`;
}

function suppliersView(root) {
  const holder = el("div", { class: "table-wrap" });
  root.append(el("h2", {}, "Supplier scorecards"), el("p", { class: "muted" }, "From the contracts' events alone; ranked best first."), holder);
  api("/suppliers?limit=200").then((page) => {
    showPolicy(root, page);
    if (!page.data.length) { holder.replaceChildren(el("p", { class: "empty", "data-testid": "empty" }, "No supplier has orders yet.")); return; }
    holder.replaceChildren(el("table", { "data-testid": "suppliers-table" },
      el("caption", { class: "sr-only" }, "Supplier scorecards"),
      el("thead", {}, el("tr", {}, ["Rank", "Supplier", "Orders", "On time", "Breaches", "Mean late", "Disputes", "Score (90 days)"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, page.data.map((r) => el("tr", {},
        el("td", { class: "num" }, r.rank), el("td", {}, who(r.supplier)),
        el("td", { class: "num" }, r.all_time.orders), el("td", { class: "num" }, pct(r.all_time.on_time_bps)),
        el("td", { class: "num" }, pct(r.all_time.breach_bps)), el("td", { class: "num" }, duration(r.all_time.mean_late_secs)),
        el("td", { class: "num" }, r.all_time.disputes_opened), el("td", { class: "num" }, pct(r.last_90_days.score_bps)))))));
  }).catch((err) => holder.replaceChildren(errorBox(err, "the scorecards")));
}

function disputesView(root) {
  const holder = el("div");
  root.append(el("h2", {}, "Open disputes"), holder);
  let shown = null;  // the ids on screen: redrawn only when they change (keeps typed rulings)
  async function load() {
    let page;
    try {
      page = await api("/orders?state=Disputed&limit=200");
    } catch (err) {
      holder.replaceChildren(errorBox(err, "the disputes"));
      shown = null;
      return;
    }
    const ids = page.data.map((o) => o.id).join(",");
    if (ids === shown) return;
    shown = ids;
    showPolicy(root, page);
    if (!page.data.length) { holder.replaceChildren(el("p", { class: "empty", "data-testid": "empty" }, "No open disputes.")); return; }
    holder.replaceChildren(...page.data.map((o) => {
      const card = el("article", { class: "panel dispute", "data-order": o.id },
        el("h3", {}, el("a", { href: `#/orders/${o.id}` }, `Order #${o.id}`), " ", badge(o.state)),
        el("p", {}, "Buyer ", who(o.buyer, true), " · supplier ", who(o.supplier, true), " · ", o.terms ? money(o.terms.price, o.terms.token) : withheldText(), " · disputed ", when(o.disputed_at)));
      const evidence = el("div", {}, el("p", { class: "muted" }, "Loading the evidence…"));
      const amount = el("input", { id: `ruling-${o.id}`, inputmode: "numeric", pattern: "[0-9]+", value: "0" });
      const isArbiter = app.party.address.toLowerCase() === (o.arbiter || "").toLowerCase();
      const rule = actionButton("Rule", isArbiter ? null : "Only this order's arbiter rules", async () => {
        await api(`/orders/${o.id}/ruling`, { method: "POST", body: { buyer_amount: amount.value.trim() } });
        load();
      });
      amount.disabled = rule.disabled;
      card.append(evidence, el("div", { class: "ruling" }, el("label", { for: `ruling-${o.id}` }, `To the buyer (base units of ${o.terms ? tokenInfo(o.terms.token).symbol : "the order's token"})`), amount, rule));
      Promise.all([api(`/orders/${o.id}/events`), api(`/orders/${o.id}/alerts?limit=50`)]).then(([ev, al]) => {
        const proofs = ev.data.filter((e) => /Proven|Dispute|Delivered/.test(e.event));
        fill(evidence, el("h4", {}, "Evidence on chain"),
          proofs.length ? el("ul", {}, proofs.map((e) => el("li", {}, el("strong", {}, e.event), " ", when(e.block_timestamp), " · tx ", el("code", { title: e.tx_hash }, short(e.tx_hash))))) : el("p", { class: "empty" }, "No proofs on chain."),
          el("h4", {}, "Alerts"), al.data.length ? alertList(al.data) : el("p", { class: "empty" }, "No alerts."));
      }).catch((err) => evidence.replaceChildren(errorBox(err, "the evidence")));
      return card;
    }));
  }
  load();
  const timer = setInterval(load, 5000);
  return () => clearInterval(timer);
}

/** How long an approval lasts: the expiry offered beside Approve. */
const SKIP = Symbol("nothing sent");
const GRANT_SPANS = [["3600", "1 hour"], ["86400", "1 day"], ["604800", "7 days"]];

/** Data-access grants (docs/sharing.md): the requests on the caller's orders for it to
 *  approve (with an expiry), deny (with a reason) or revoke, and the caller's own. */
function grantsView(root) {
  const decide = el("div", { "data-testid": "grants-to-decide" });
  const own = el("div", { "data-testid": "grants-mine" });
  root.append(el("h2", {}, "Data-access grants"),
    el("p", { class: "muted" }, "A party in another jurisdiction reads an order's medium data (terms, readings, positions, risk) only under a grant its supplier or buyer approves; each release is written to the disclosure log. A buyer's approval covers the agreement's data only: the readings are the supplier's."),
    el("section", { class: "panel", "aria-labelledby": "grants-decide-h" }, el("h3", { id: "grants-decide-h" }, "Requests on your orders"), decide),
    el("section", { class: "panel", "aria-labelledby": "grants-mine-h" }, el("h3", { id: "grants-mine-h" }, "Your requests"), own));
  const owners = new Map(); // order id → {buyer, supplier} as the caller sees them (or null)
  let shown = null;
  let gen = 0;

  async function ownerOf(orderId) {
    if (!owners.has(orderId)) {
      owners.set(orderId, api(`/orders/${orderId}`).then((o) => ({ buyer: o.buyer, supplier: o.supplier })).catch(() => null));
    }
    return owners.get(orderId);
  }

  /** Why the caller cannot decide on ``g`` (null when it can), as the API would answer. */
  function whyNot(g, o) {
    if (!canWrite()) return "Read-only: auditors change nothing";
    const me = app.party.address.toLowerCase();
    if (g.grantee_address.toLowerCase() === me) return "A grantee cannot decide its own request";
    if (!o || ![o.buyer, o.supplier].some((a) => a && a.toLowerCase() === me)) return "Only the order's supplier or buyer decides";
    return null;
  }

  function decisionRow(g, o) {
    const why = whyNot(g, o);
    const cells = [
      el("td", {}, el("a", { href: `#/orders/${g.order_id}` }, `#${g.order_id}`)),
      el("td", {}, g.grantee, el("br"), el("span", { class: "addr muted", title: g.grantee_address }, short(g.grantee_address))),
      el("td", {}, g.grantee_jurisdiction),
      el("td", {}, g.sensitivity),
      el("td", { class: "reason" }, g.reason),
      el("td", {}, when(g.requested_at)),
      el("td", { "data-testid": "grant-state" }, el("span", { class: `grant-state grant-${g.state}` }, grantState(g))),
    ];
    const act = el("td", { class: "grant-actions" });
    const button = (label, run, extraWhy) => {
      const reason = why || extraWhy;
      const b = el("button", { type: "button", class: "action", disabled: !!reason, title: reason || `${label} request #${g.id}`, "aria-label": `${label} request #${g.id}` }, label);
      if (reason) b.append(el("span", { class: "sr-only" }, ` (${reason})`));
      b.addEventListener("click", async () => {
        b.disabled = true;
        act.querySelector(":scope > .error")?.remove();
        try {
          if ((await run()) === SKIP) { b.disabled = false; return; }
          shown = null;
          await load();
        } catch (err) { act.append(errorBox(err, `the ${label.toLowerCase()}`)); b.disabled = false; }
      });
      return b;
    };
    if (g.state === "requested") {
      const spanId = `grant-${g.id}-span`, denyId = `grant-${g.id}-deny`;
      const span = el("select", { id: spanId, disabled: !!why }, GRANT_SPANS.map(([v, t]) => el("option", { value: v, selected: v === "86400" }, t)));
      const denyReason = el("input", { id: denyId, type: "text", maxlength: 1000, disabled: !!why, placeholder: "required to deny" });
      const approve = button("Approve", () => api(`/grants/${g.id}/approve`, { method: "POST", body: { expires_at: Math.floor(Date.now() / 1000) + Number(span.value) } }));
      const deny = button("Deny", async () => {
        const text = denyReason.value.trim();
        if (!text) {
          act.append(el("p", { class: "error", role: "alert" }, "A denial needs a reason: say why in “Reason to deny”."));
          denyReason.focus();
          return SKIP;
        }
        return api(`/grants/${g.id}/deny`, { method: "POST", body: { reason: text } });
      });
      act.append(el("div", { class: "ruling" }, el("label", { for: spanId }, "Grant for"), span, approve),
        el("div", { class: "ruling" }, el("label", { for: denyId }, "Reason to deny"), denyReason, deny));
    } else {
      act.append(button("Revoke", () => api(`/grants/${g.id}/revoke`, { method: "POST" }), g.state === "approved" ? null : `The grant is ${g.state}`));
    }
    return el("tr", { "data-grant": g.id, "data-state": g.state }, ...cells, act);
  }

  async function load() {
    const my = ++gen;
    let page;
    try {
      page = await api("/grants?limit=500");
    } catch (err) {
      if (my !== gen) return;
      decide.replaceChildren(errorBox(err, "the grants"));
      own.replaceChildren();
      shown = null;
      return;
    }
    const me = app.party.address.toLowerCase();
    const mine = page.data.filter((g) => g.grantee_address.toLowerCase() === me);
    const others = page.data.filter((g) => g.grantee_address.toLowerCase() !== me);
    const facts = await Promise.all(others.map((g) => ownerOf(g.order_id)));
    if (my !== gen) return;
    // redrawn only when a grant changed (keeps a typed reason and the keyboard focus)
    const drawn = JSON.stringify(page.data);
    if (drawn === shown) return;
    shown = drawn;
    showPolicy(root, page);
    const pending = others.filter((g) => g.state === "requested");
    const decided = others.filter((g) => g.state !== "requested");
    const table = (caption, rows, testid) => el("div", { class: "table-wrap" }, el("table", { class: "grants", "data-testid": testid },
      el("caption", {}, caption),
      el("thead", {}, el("tr", {}, ["Order", "Asked by", "Jurisdiction", "Class", "Reason", "Asked", "State", "Decision"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows.map((g) => decisionRow(g, facts[others.indexOf(g)])))));
    fill(decide,
      pending.length ? table(`Pending requests (${pending.length})`, pending, "grants-pending") : el("p", { class: "empty", "data-testid": "empty-pending" }, "No pending request on your orders."),
      decided.length ? table(`Decided (${decided.length})`, decided, "grants-decided") : null);
    fill(own, mine.length ? grantList(mine) : el("p", { class: "empty", "data-testid": "empty-mine" }, "You have asked for no order's data. A party elsewhere asks from the order's page, where the sharing policy refuses its data."));
  }
  load();
  const timer = setInterval(load, 5000);
  return () => { clearInterval(timer); gen++; };
}

// ---- start ------------------------------------------------------------------------

if (app.key) {
  signIn().catch((err) => { app.key = null; sessionStorage.removeItem(KEY_STORAGE); showSignIn(errorBox(err, "your account")); });
} else {
  showSignIn();
}
