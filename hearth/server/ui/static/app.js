// The dashboard: one view per section, each filled from its own /ui/api endpoint.
import { barChart, lineChart } from "./charts.js";
import { bytes, clear, el, fill, number, seconds, td, when } from "./dom.js";

const $ = (id) => document.getElementById(id);
const state = { csrf: "", keysOffset: 0, keysTotal: 0, chat: [], abort: null };
const KEYS_PAGE = 50;

// --- HTTP ------------------------------------------------------------------------------------

async function api(path, { method = "GET", body } = {}) {
  const headers = {};
  if (method !== "GET") headers["X-CSRF-Token"] = state.csrf;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    window.location.replace("/ui/");
    throw new Error("logged out");
  }
  return response;
}

async function json(path, options) {
  const response = await api(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error((body.error && body.error.message) || `HTTP ${response.status}`);
  return body;
}

function say(message, isError = false) {
  const status = $("status");
  status.textContent = message;
  status.classList.toggle("error", isError);
}

async function guarded(work) {
  try {
    await work();
  } catch (error) {
    if (error.message !== "logged out") say(error.message, true);
  }
}

// --- Views ----------------------------------------------------------------------------------

const views = {
  overview: loadOverview,
  usage: loadUsage,
  models: loadModels,
  store: loadStore,
  safety: loadSafety,
  playground: loadPlayground,
  keys: loadKeys,
};

function show() {
  const name = (window.location.hash || "#overview").slice(1);
  const view = views[name] ? name : "overview";
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `view-${view}`;
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.view === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  say("");
  guarded(views[view]);
}

async function loadOverview() {
  const data = await json(`/ui/api/overview?window=${$("overview-window").value}`);
  const t = data.totals;
  const l = data.latency_ms;
  const cards = [
    ["Requests", number(t.requests)],
    ["Prompt tokens", number(t.prompt_tokens)],
    ["Completion tokens", number(t.completion_tokens)],
    ["Errors", number(t.errors)],
    ["Aborted", number(t.aborted)],
    ["Filtered", number(t.filtered)],
    ["Latency p50", l.p50 === null ? "-" : `${number(l.p50)} ms`],
    ["Latency p95", l.p95 === null ? "-" : `${number(l.p95)} ms`],
    ["First token p50", l.ttft_p50 === null ? "-" : `${number(l.ttft_p50)} ms`],
    ["First token p95", l.ttft_p95 === null ? "-" : `${number(l.ttft_p95)} ms`],
  ];
  const totals = clear($("overview-totals"));
  cards.forEach(([label, value]) => totals.appendChild(el("div", { class: "card" }, el("dt", {}, label), el("dd", {}, value))));
  if (data.sampled) totals.appendChild(el("p", { class: "muted" }, "Percentiles from the most recent 100,000 requests."));
  const s = data.series;
  const charts = [
    ["chart-requests", barChart("Requests per bucket", s.requests, s.start, s.bucket_seconds)],
    ["chart-tokens", barChart("Tokens per bucket", s.tokens, s.start, s.bucket_seconds)],
    ["chart-throughput", lineChart("Generated tokens per second", s.tokens_per_second, s.start, s.bucket_seconds)],
    ["chart-errors", barChart("Errors per bucket", s.errors, s.start, s.bucket_seconds)],
  ];
  charts.forEach(([id, chart]) => clear($(id)).appendChild(chart));
  const engine = await json("/ui/api/engine");
  fill(
    $("engine-table").tBodies[0],
    engine.gauges.map((g) => [td(g.name), td(Object.entries(g.labels).map(([k, v]) => `${k}=${v}`).join(", ")), td(number(g.value), true)]),
    3,
    "No engine gauges yet.",
  );
}

async function loadUsage() {
  const by = $("usage-by").value;
  $("usage-group-head").textContent = { key: "Key", team: "Team", model: "Model" }[by];
  const data = await json(`/ui/api/usage?by=${by}&window=${$("usage-window").value}`);
  fill(
    $("usage-table").tBodies[0],
    data.rows.map((r) => [
      td(r.group === null ? "(no key)" : r.group),
      ...[r.requests, r.errors, r.aborted, r.prompt_tokens, r.completion_tokens, r.total_tokens, r.mean_ttft_ms, r.mean_duration_ms]
        .map((v) => td(number(v), true)),
    ]),
    9,
    "No requests in this window.",
  );
  const quotas = await json("/ui/api/quotas");
  const box = clear($("quotas"));
  if (!quotas.configured) box.appendChild(notConfigured(quotas.message));
  else box.appendChild(genericTable(quotas.keys.concat(quotas.teams), "Quotas"));
}

function notConfigured(message) {
  return el("p", { class: "placeholder" }, el("strong", {}, "Not configured. "), message);
}

function genericTable(rows, caption) {
  if (!rows.length) return el("p", { class: "muted" }, "Nothing yet.");
  const columns = Object.keys(rows[0]);
  return el("table", {},
    el("caption", { class: "sr-only" }, caption),
    el("thead", {}, el("tr", {}, columns.map((c) => el("th", { scope: "col" }, c)))),
    el("tbody", {}, rows.map((row) => el("tr", {}, columns.map((c) => td(typeof row[c] === "object" ? JSON.stringify(row[c]) : row[c]))))));
}

async function loadModels() {
  const data = await json("/ui/api/models");
  $("models-budget").textContent = `Memory budget: ${bytes(data.budget_bytes)}.`;
  fill(
    $("loaded-table").tBodies[0],
    data.loaded.map((m) => [
      td(m.name),
      td(bytes(m.memory.total), true),
      td(`weights ${bytes(m.memory.weights)}, KV ${bytes(m.memory.kv_cache)}, compute ${bytes(m.memory.compute)}`),
      td(number(m.context), true),
      td(number(m.slots), true),
      td(number(m.active_requests), true),
      td(m.active_requests ? "in use" : seconds(m.expires_in)),
    ]),
    7,
    "No model is loaded. A request loads one.",
  );
  return data;
}

async function loadStore() {
  const [models, licenses] = await Promise.all([json("/ui/api/models"), json("/ui/api/licenses")]);
  const byName = new Map(licenses.models.map((m) => [m.model, m]));
  const policy = licenses.policy || {};
  $("policy").textContent = policy.declared ? `License policy from ${policy.origin}.` : "No license policy declared in hearth.toml: nothing is enforced.";
  fill(
    $("store-table").tBodies[0],
    models.store.map((m) => {
      const license = byName.get(m.name);
      const obligations = license ? license.obligations.map((o) => el("li", {}, o.text)) : [];
      return [
        td(m.name),
        td(bytes(m.size), true),
        td(m.quantization),
        td(license ? license.license.name : "-"),
        td(license ? license.decision : "-"),
        el("td", {}, obligations.length ? el("ul", { class: "plain" }, obligations) : "none",
          license && license.attribution ? el("p", { class: "muted" }, `Attribution: ${license.attribution}`) : null),
      ];
    }),
    6,
    "The store is empty: hearth pull a model.",
  );
}

async function loadSafety() {
  const data = await json("/ui/api/safety");
  const box = clear($("safety"));
  box.appendChild(data.configured ? genericTable(data.events, "Safety events") : notConfigured(data.message));
}

// --- Playground -----------------------------------------------------------------------------

async function loadPlayground() {
  const select = $("chat-model");
  if (select.options.length) return;
  const data = await json("/ui/api/models");
  data.store.forEach((m) => select.appendChild(el("option", { value: m.name }, m.name)));
}

function renderChat() {
  const log = clear($("chat-log"));
  state.chat.forEach((m) => log.appendChild(el("li", { class: `msg ${m.role}` }, el("span", { class: "role" }, `${m.role}: `), el("span", { class: "content" }, m.content))));
}

async function sendChat(event) {
  event.preventDefault();
  const text = $("chat-input").value;
  if (!text.trim() || state.abort) return;
  state.chat.push({ role: "user", content: text });
  $("chat-input").value = "";
  const messages = [];
  if ($("chat-system").value.trim()) messages.push({ role: "system", content: $("chat-system").value });
  messages.push(...state.chat);
  const reply = { role: "assistant", content: "" };
  state.chat.push(reply);
  renderChat();
  const target = $("chat-log").lastChild.querySelector(".content");
  state.abort = new AbortController();
  $("chat-send").disabled = true;
  $("chat-stop").disabled = false;
  $("chat-usage").textContent = "";
  try {
    const response = await fetch("/ui/api/chat", {
      method: "POST",
      credentials: "same-origin",
      signal: state.abort.signal,
      headers: { "Content-Type": "application/json", "X-CSRF-Token": state.csrf },
      body: JSON.stringify({ model: $("chat-model").value, messages, max_tokens: Number($("chat-max").value) || 128 }),
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error((body.error && body.error.message) || `HTTP ${response.status}`);
    }
    await readStream(response, (chunk) => {
      const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
      if (delta && delta.content) {
        reply.content += delta.content;
        target.textContent = reply.content;
      }
      if (chunk.usage) $("chat-usage").textContent = `${chunk.usage.prompt_tokens} prompt + ${chunk.usage.completion_tokens} completion tokens`;
    });
  } catch (error) {
    if (error.name !== "AbortError") say(`Chat failed: ${error.message}`, true);
  } finally {
    state.abort = null;
    $("chat-send").disabled = false;
    $("chat-stop").disabled = true;
    $("chat-log").lastChild.dataset.done = "true";
  }
}

async function readStream(response, onChunk) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message || "stream error");
        onChunk(chunk);
      }
    }
  }
}

// --- Keys -----------------------------------------------------------------------------------

async function loadKeys() {
  const params = new URLSearchParams({
    offset: String(state.keysOffset), limit: String(KEYS_PAGE), q: $("key-search").value, status: $("key-status").value,
  });
  const data = await json(`/ui/api/keys?${params}`);
  state.keysTotal = data.total;
  fill(
    $("keys-table").tBodies[0],
    data.keys.map((k) => [
      td(k.admin ? [k.name, " ", el("span", { class: "badge" }, "admin")] : k.name),
      el("td", { class: "mono" }, k.prefix),
      td(k.team || "-"),
      td(k.models === null ? "all" : k.models.join(", ")),
      td(when(k.created)),
      td(when(k.expires)),
      td(when(k.last_used)),
      td(k.status),
      el("td", {}, k.status === "revoked" ? "" : revokeButton(k.name)),
    ]),
    9,
    "No keys match.",
  );
  const last = Math.min(state.keysOffset + KEYS_PAGE, data.total);
  $("keys-page").textContent = data.total ? `${state.keysOffset + 1}–${last} of ${number(data.total)}` : "0 keys";
  $("keys-prev").disabled = state.keysOffset === 0;
  $("keys-next").disabled = last >= data.total;
}

function revokeButton(name) {
  // Two steps instead of a confirm() dialog: the first click asks, the second revokes.
  const button = el("button", { type: "button", class: "danger", "aria-label": `Revoke ${name}` }, "Revoke");
  button.addEventListener("click", () => guarded(async () => {
    if (button.dataset.armed !== "true") {
      button.dataset.armed = "true";
      button.textContent = "Confirm revoke";
      button.setAttribute("aria-label", `Confirm revoking ${name}`);
      return;
    }
    await json(`/ui/api/keys/${encodeURIComponent(name)}`, { method: "DELETE" });
    say(`Revoked ${name}.`);
    await loadKeys();
  }));
  return button;
}

async function createKey(event) {
  event.preventDefault();
  const models = $("key-models").value.split(",").map((m) => m.trim()).filter(Boolean);
  const body = {
    name: $("key-name").value.trim(),
    team: $("key-team").value.trim() || null,
    models: models.length ? models : null,
    expires: $("key-expires").value.trim() || null,
    admin: $("key-admin").checked,
  };
  const data = await json("/ui/api/keys", { method: "POST", body });
  $("new-secret-name").textContent = data.key.name;
  $("new-secret-value").textContent = data.secret;
  $("new-secret").hidden = false;
  $("key-create").reset();
  say(`Created ${data.key.name}.`);
  state.keysOffset = 0;
  await loadKeys();
  $("new-secret-done").focus();
}

// --- Start ----------------------------------------------------------------------------------

function debounce(fn, ms) {
  let timer = 0;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(fn, ms);
  };
}

async function start() {
  const session = await json("/ui/api/session");
  state.csrf = session.csrf;
  $("who").textContent = session.name;
  $("logout").addEventListener("click", () => guarded(async () => {
    await api("/ui/api/logout", { method: "POST" });
    window.location.replace("/ui/");
  }));
  $("overview-window").addEventListener("change", () => guarded(loadOverview));
  $("overview-refresh").addEventListener("click", () => guarded(loadOverview));
  $("usage-by").addEventListener("change", () => guarded(loadUsage));
  $("usage-window").addEventListener("change", () => guarded(loadUsage));
  $("chat-form").addEventListener("submit", (event) => guarded(() => sendChat(event)));
  $("chat-stop").addEventListener("click", () => state.abort && state.abort.abort());
  $("chat-clear").addEventListener("click", () => { state.chat = []; renderChat(); });
  $("chat-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("chat-form").requestSubmit();
  });
  $("key-create").addEventListener("submit", (event) => guarded(() => createKey(event)));
  $("new-secret-done").addEventListener("click", () => {
    $("new-secret-value").textContent = "";
    $("new-secret").hidden = true;
  });
  const reloadKeys = () => { state.keysOffset = 0; guarded(loadKeys); };
  $("key-search").addEventListener("input", debounce(reloadKeys, 200));
  $("key-status").addEventListener("change", reloadKeys);
  $("keys-prev").addEventListener("click", () => { state.keysOffset = Math.max(0, state.keysOffset - KEYS_PAGE); guarded(loadKeys); });
  $("keys-next").addEventListener("click", () => { state.keysOffset += KEYS_PAGE; guarded(loadKeys); });
  window.addEventListener("hashchange", show);
  show();
}

guarded(start);
