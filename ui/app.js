// hookflow UI: a hash-routed single page over the JSON API (SPEC §8).
// Every piece of data is inserted as text (textContent / text nodes),
// never as HTML, so a payload holding markup shows as markup and runs
// nothing. The page's Content-Security-Policy forbids inline scripts too.

const STATUSES = ["queued", "running", "waiting", "retrying", "succeeded", "filtered", "failed"];
const OUTCOMES = ["accepted", "unmatched", "duplicate", "rejected"];
const PAGE = 50;

const main = document.getElementById("main");
let token = sessionStorage.getItem("hookflow-token") || "";
let onRunUpdate = null; // the current view's live handler
// Updates that arrived while the current view was still loading: its
// handler gets them once installed (see `live`), so a run that finished
// meanwhile is not shown in a stale state. `null` means "reload".
let missed = [];
let generation = 0; // counts route changes; a slower, older view stands down
const MAX_MISSED = 500;

// ---------------------------------------------------------------- helpers

/** Build an element; strings and numbers become text nodes. */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function svg(tag, attrs = {}, ...children) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  for (const c of children.flat()) if (c) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function badge(status) {
  return el("span", { class: `badge ${status}`, text: status });
}

function time(ts) {
  if (!ts) return "";
  const d = new Date(ts);
  return d.toLocaleString();
}

function ago(ts) {
  if (!ts) return "";
  const s = Math.round((Date.now() - new Date(ts).getTime()) / 1000);
  if (s < 60) return `${Math.max(s, 0)}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  if (s < 86400) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)}d ago`;
}

/** How long until `ts`: "in 5m", or "now" once it has passed. */
function until(ts) {
  const s = Math.round((new Date(ts).getTime() - Date.now()) / 1000);
  if (s <= 0) return "now";
  if (s < 60) return `in ${s}s`;
  if (s < 3600) return `in ${Math.round(s / 60)}m`;
  if (s < 86400) return `in ${Math.round(s / 3600)}h`;
  return `in ${Math.round(s / 86400)}d`;
}

function ms(n) {
  if (n === null || n === undefined) return "";
  return n < 1000 ? `${n} ms` : `${(n / 1000).toFixed(2)} s`;
}

function toast(text) {
  const t = document.getElementById("toast");
  t.textContent = text;
  t.classList.add("show");
  setTimeout(() => t.classList.remove("show"), 1600);
}

async function copy(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const ta = el("textarea", {}, text);
    document.body.append(ta);
    ta.select();
    document.execCommand("copy");
    ta.remove();
  }
  toast("Copied");
}

function copyButton(label, text) {
  return el("button", { class: "copy", type: "button", "aria-label": label, onclick: () => copy(typeof text === "function" ? text() : text) }, "Copy");
}

/** A collapsible, coloured JSON tree built from text nodes only. */
function jsonTree(value, depth = 0) {
  const scalar = (v) => {
    if (v === null) return el("span", { class: "l", text: "null" });
    if (typeof v === "string") return el("span", { class: "s", text: JSON.stringify(v) });
    if (typeof v === "number") return el("span", { class: "n", text: String(v) });
    return el("span", { class: "l", text: String(v) });
  };
  if (value === null || typeof value !== "object") return scalar(value);
  const isArr = Array.isArray(value);
  const entries = isArr ? value.map((v, i) => [i, v]) : Object.entries(value);
  if (entries.length === 0) return el("span", { class: "l", text: isArr ? "[]" : "{}" });
  const details = el("details", depth < 2 ? { open: true } : {});
  details.append(el("summary", { text: isArr ? `[ ${entries.length} items ]` : `{ ${entries.length} keys }` }));
  for (const [k, v] of entries) {
    details.append(el("div", { class: "line" }, isArr ? null : el("span", { class: "k", text: JSON.stringify(k) }), isArr ? null : ": ", jsonTree(v, depth + 1)));
  }
  return details;
}

function jsonBlock(value, label) {
  return el("div", { class: "json" }, el("div", { class: "row" }, copyButton(`Copy ${label}`, () => JSON.stringify(value, null, 2))), jsonTree(value));
}

// ---------------------------------------------------------------- API

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token) headers["Authorization"] = `Bearer ${token}`;
  // Without a token the server takes a state-changing request only as JSON
  // (that keeps cross-site form posts out), so every one says it is.
  const method = (options.method || "GET").toUpperCase();
  const typed = Object.keys(headers).some((k) => k.toLowerCase() === "content-type");
  if (method !== "GET" && method !== "HEAD" && !typed) headers["Content-Type"] = "application/json";
  const res = await fetch(path, Object.assign({}, options, { headers }));
  if (res.status === 401) {
    await askToken();
    return api(path, options);
  }
  const type = res.headers.get("content-type") || "";
  const body = type.includes("json") ? await res.json() : await res.text();
  if (!res.ok) throw new Error((body && body.error) || `${res.status} ${res.statusText}`);
  return body;
}

function askToken() {
  return new Promise((resolve) => {
    const dialog = document.getElementById("token-dialog");
    const form = document.getElementById("token-form");
    form.onsubmit = () => {
      token = document.getElementById("token-input").value.trim();
      sessionStorage.setItem("hookflow-token", token);
      resolve();
    };
    if (!dialog.open) dialog.showModal();
  });
}

/** Server-Sent Events read with fetch, so the token header goes along. */
async function stream() {
  const live = document.getElementById("live");
  for (;;) {
    try {
      const headers = token ? { Authorization: `Bearer ${token}` } : {};
      const res = await fetch("/api/stream", { headers });
      if (!res.ok || !res.body) throw new Error(`stream ${res.status}`);
      live.textContent = "live";
      live.classList.add("on");
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const chunk = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          let event = "message";
          let data = "";
          for (const line of chunk.split("\n")) {
            if (line.startsWith("event:")) event = line.slice(6).trim();
            else if (line.startsWith("data:")) data += line.slice(5).trim();
          }
          if (event === "run" && data) {
            try { deliver(JSON.parse(data)); } catch (e) { console.warn(e); }
          } else if (event === "lagged") {
            deliver(null);
          }
        }
      }
    } catch (e) {
      console.warn("live updates:", e);
    }
    live.textContent = "reconnecting…";
    live.classList.remove("on");
    await new Promise((r) => setTimeout(r, 2000));
  }
}

/** Hand a run update (or `null`: updates were lost) to the view. */
function deliver(update) {
  if (onRunUpdate) return onRunUpdate(update);
  if (missed.length < MAX_MISSED) missed.push(update);
  else missed = [null];
}

/** Install the view started at `gen` as the live handler, first giving it
 *  what arrived while it loaded. Stops early once the handler re-routes. */
function live(gen, handler) {
  if (gen !== generation) return;
  onRunUpdate = handler;
  const queued = missed;
  missed = [];
  for (const u of queued) {
    if (onRunUpdate !== handler) break;
    handler(u);
  }
}

// ---------------------------------------------------------------- routing

function route() {
  const hash = location.hash.replace(/^#/, "") || "/runs";
  const [path, query] = hash.split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean);
  onRunUpdate = null;
  missed = [];
  generation += 1;
  const gen = generation;
  for (const a of document.querySelectorAll("nav a")) {
    a.toggleAttribute("aria-current", a.dataset.nav === parts[0]);
    if (a.dataset.nav === parts[0]) a.setAttribute("aria-current", "page");
  }
  const view =
    parts[0] === "runs" && parts[1] ? runView(parts[1]) :
    parts[0] === "events" && parts[1] ? eventView(parts[1]) :
    parts[0] === "events" ? eventsView(params) :
    parts[0] === "workflows" && parts[1] ? workflowView(parts[1]) :
    parts[0] === "workflows" ? workflowsView() :
    runsView(params);
  view.catch((e) => show(gen, el("div", { class: "panel error", role: "alert" }, `Could not load this page: ${e.message}`)));
}

/** Render the view started at `gen`, unless the user has moved on since. */
function show(gen, ...nodes) {
  if (gen !== generation) return;
  // Views pass `null` for parts they leave out; replaceChildren would
  // write it out as the text "null".
  main.replaceChildren(...nodes.filter((n) => n !== null && n !== undefined && n !== false));
}

function setQuery(base, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v) q.set(k, v);
  const s = q.toString();
  location.hash = s ? `${base}?${s}` : base;
}

// ---------------------------------------------------------------- runs

function chart(stats) {
  const W = 600, H = 100, n = stats.per_minute.length;
  const totals = stats.per_minute.map((m) => Object.values(m.counts).reduce((a, b) => a + b, 0));
  const max = Math.max(1, ...totals);
  const bw = W / n;
  const colors = getComputedStyle(document.documentElement);
  const bars = [];
  stats.per_minute.forEach((m, i) => {
    let y = H;
    for (const s of STATUSES) {
      const c = m.counts[s] || 0;
      if (!c) continue;
      const h = (c / max) * (H - 4);
      y -= h;
      bars.push(svg("rect", { x: (i * bw + 0.5).toFixed(1), y: y.toFixed(1), width: Math.max(bw - 1, 1).toFixed(1), height: h.toFixed(1), fill: colors.getPropertyValue(`--${s}`).trim() || "#888" },
        svg("title", {}, `${new Date(m.minute).toLocaleTimeString()}: ${c} ${s}`)));
    }
  });
  const total = totals.reduce((a, b) => a + b, 0);
  const graphic = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img", "aria-label": `Runs per minute over the last hour, by status: ${total} runs` }, ...bars);
  const legend = el("div", { class: "legend" }, ...STATUSES.map((s) => {
    const i = el("i");
    i.style.background = colors.getPropertyValue(`--${s}`).trim();
    return el("span", {}, i, s);
  }), el("span", { class: "muted" }, `${total} runs in the last hour · peak ${max}/min`));
  return el("section", { class: "panel", "aria-label": "Runs per minute" }, graphic, legend);
}

function runRow(r) {
  const attempts = r.steps.reduce((n, s) => n + (s.attempts ? s.attempts.length : 0), 0);
  return el("tr", { "data-run": r.id },
    el("td", { title: time(r.created_at) }, el("a", { href: `#/runs/${r.id}` }, ago(r.created_at))),
    el("td", {}, el("a", { href: `#/runs?workflow=${encodeURIComponent(r.workflow)}` }, r.workflow)),
    el("td", {}, badge(r.status), r.replay_of ? el("span", { class: "muted", title: `replay of ${r.replay_of}` }, " ↻") : null),
    el("td", { class: "hide-narrow" }, ms(r.duration_ms)),
    el("td", { class: "hide-narrow" }, attempts || ""),
    el("td", { class: "summary", title: r.summary || "" }, r.summary || ""));
}

async function runsView(params) {
  const gen = generation;
  const workflow = params.get("workflow") || "";
  const status = params.get("status") || "";
  const before = params.get("before") || "";
  const [workflows, stats] = await Promise.all([api("/api/workflows"), api("/api/stats")]);
  const q = new URLSearchParams({ limit: PAGE });
  if (workflow) q.set("workflow", workflow);
  if (status) q.set("status", status);
  if (before) q.set("before", before);
  const page = await api(`/api/runs?${q}`);

  const wfSelect = el("select", { id: "f-workflow", onchange: (e) => setQuery("/runs", { workflow: e.target.value, status }) },
    el("option", { value: "" }, "all workflows"), ...workflows.map((w) => el("option", { value: w.name, selected: w.name === workflow }, w.name)));
  const stSelect = el("select", { id: "f-status", onchange: (e) => setQuery("/runs", { workflow, status: e.target.value }) },
    el("option", { value: "" }, "any status"), ...STATUSES.map((s) => el("option", { value: s, selected: s === status }, s)));
  const filters = el("div", { class: "row filters" },
    el("label", { for: "f-workflow" }, "Workflow"), wfSelect, el("label", { for: "f-status" }, "Status"), stSelect);

  const tbody = el("tbody", { id: "runs-body" }, ...page.items.map(runRow));
  const table = el("table", { "aria-label": "Runs, newest first" },
    el("thead", {}, el("tr", {}, el("th", {}, "When"), el("th", {}, "Workflow"), el("th", {}, "Status"),
      el("th", { class: "hide-narrow" }, "Duration"), el("th", { class: "hide-narrow" }, "Attempts"), el("th", {}, "Event"))),
    tbody);

  const pager = el("div", { class: "row pager" },
    before ? el("button", { type: "button", onclick: () => setQuery("/runs", { workflow, status }) }, "Newest") : null,
    page.next_before ? el("button", { type: "button", onclick: () => setQuery("/runs", { workflow, status, before: page.next_before }) }, "Older runs") : null);

  let body;
  if (page.items.length === 0 && !before) {
    body = emptyRuns(workflows, workflow || status);
  } else {
    body = el("div", {}, table, pager);
  }
  show(gen, el("h1", {}, "Runs"), chart(stats), filters, body);

  if (!before) {
    let statsTimer = null;
    // A run changes several times within a few ms, and the answers to the
    // reads below may come back in any order: only the answer to the
    // latest read of a run is shown (reads are numbered across runs, so a
    // late answer never passes for a later one), and the row is looked up
    // once it is in, so that an older state never replaces a newer one.
    const asked = new Map();
    let reads = 0;
    live(gen, async (u) => {
      if (!u) return route();
      if (workflow && u.workflow !== workflow) return;
      const ask = ++reads;
      asked.set(u.id, ask);
      try {
        const run = await api(`/api/runs/${encodeURIComponent(u.id)}`);
        // Moved on (another page, or this one loaded again), or a later
        // read of this run is under way.
        if (gen !== generation || asked.get(u.id) !== ask) return;
        asked.delete(u.id);
        const row = tbody.querySelector(`tr[data-run="${CSS.escape(u.id)}"]`);
        if (status && run.status !== status) { if (row) row.remove(); return; }
        const fresh = runRow(run);
        if (row) row.replaceWith(fresh);
        else {
          // The first run on an empty page: load the page with its table.
          if (!tbody.isConnected) return route();
          fresh.classList.add("fresh");
          tbody.prepend(fresh);
          while (tbody.children.length > PAGE) tbody.lastElementChild.remove();
        }
      } catch (e) { console.warn(e); }
      if (!statsTimer) statsTimer = setTimeout(async () => {
        statsTimer = null;
        const panel = main.querySelector("section.panel");
        if (panel) panel.replaceWith(chart(await api("/api/stats")));
      }, 3000);
    });
  }
}

function emptyRuns(workflows, filtered) {
  if (filtered) return el("div", { class: "panel empty" }, el("p", {}, "No runs match these filters."), el("a", { href: "#/runs" }, "Show all runs"));
  const wf = workflows.find((w) => w.status === "loaded" && !/verify/.test(w.name)) || workflows.find((w) => w.status === "loaded");
  const url = wf ? `${location.origin}${wf.hook}` : `${location.origin}/hooks/<path>`;
  return el("div", { class: "panel empty" },
    el("p", {}, "No runs yet. Send a first event to a workflow:"),
    el("pre", {}, `curl -X POST '${url}' \\\n  -H 'content-type: application/json' \\\n  -d '{"hello": "hookflow"}'`),
    el("p", { class: "muted" }, "It appears here as soon as it arrives. ", el("a", { href: "#/workflows" }, "See the workflows and their URLs.")));
}

// ---------------------------------------------------------------- one run

function curlFor(event) {
  const q = (s) => `'${String(s).replace(/'/g, "'\\''")}'`;
  const parts = [`curl -X ${event.method} ${q(location.origin + event.path)}`];
  for (const [k, v] of Object.entries(event.headers || {})) {
    if (v === "[redacted]" || ["host", "content-length", "connection", "accept-encoding", "user-agent"].includes(k)) continue;
    parts.push(`-H ${q(`${k}: ${v}`)}`);
  }
  if (event.body !== null && event.body !== undefined) {
    parts.push(`--data-binary ${q(typeof event.body === "string" ? event.body : JSON.stringify(event.body))}`);
  }
  return parts.join(" \\\n  ");
}

function headersTable(headers) {
  const rows = Object.entries(headers || {}).map(([k, v]) => el("tr", {}, el("th", { scope: "row" }, k), el("td", { class: "mono" }, v)));
  return rows.length ? el("table", {}, el("tbody", {}, ...rows)) : el("p", { class: "muted" }, "No headers.");
}

function attemptView(a) {
  const resp = a.response;
  return el("div", { class: "attempt" },
    el("div", { class: "row" }, el("strong", {}, `Attempt ${a.n}`), resp ? badge(resp.status < 400 ? "succeeded" : "failed") : null,
      resp ? el("span", {}, `HTTP ${resp.status}`) : null, el("span", { class: "muted" }, `${ms(a.duration_ms)} · ${time(a.started_at)}`)),
    a.error ? el("p", { class: "error" }, a.error) : null,
    el("details", {}, el("summary", {}, `Request: ${a.request.method} ${a.request.url}`),
      headersTable(a.request.headers), a.request.body !== null ? jsonBlock(a.request.body, "request body") : null,
      a.request.body_size ? el("p", { class: "muted" }, `Body kept truncated; full size ${a.request.body_size} bytes.`) : null),
    resp ? el("details", {}, el("summary", {}, `Response: ${resp.status}`), headersTable(resp.headers),
      resp.body !== null ? jsonBlock(resp.body, "response body") : null,
      resp.body_size ? el("p", { class: "muted" }, `Body kept truncated; full size ${resp.body_size} bytes.`) : null) : null);
}

async function runView(id) {
  const gen = generation;
  const run = await api(`/api/runs/${encodeURIComponent(id)}`);
  let event = null;
  try { event = await api(`/api/events/${encodeURIComponent(run.event_id)}`); } catch (e) { console.warn(e); }
  const failedStep = run.steps.find((s) => s.status === "failed");

  const replay = async (from) => {
    try {
      const r = await api(`/api/runs/${encodeURIComponent(run.id)}/replay`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ from }) });
      location.hash = `#/runs/${r.run_id}`;
    } catch (e) { toast(`Replay failed: ${e.message}`); }
  };
  const actions = el("div", { class: "row" },
    el("button", { type: "button", class: "primary", id: "replay-start", onclick: () => replay("start") }, "Replay from start"),
    failedStep ? el("button", { type: "button", id: "replay-failed", onclick: () => replay("failed_step") }, `Replay from ${failedStep.id}`) : null,
    event ? el("button", { type: "button", onclick: () => copy(curlFor(event)) }, "Copy as curl") : null,
    el("a", { href: `/api/runs/${encodeURIComponent(run.id)}/test-case`, download: `${run.workflow}.test.yaml` }, "Save as test case"));

  const facts = el("dl", { class: "kv" },
    el("dt", {}, "Workflow"), el("dd", {}, el("a", { href: `#/workflows/${encodeURIComponent(run.workflow)}` }, run.workflow), el("span", { class: "muted" }, ` · version ${run.workflow_version}`)),
    el("dt", {}, "Created"), el("dd", {}, time(run.created_at)),
    el("dt", {}, "Duration"), el("dd", {}, ms(run.duration_ms) || "—"),
    run.next_attempt_at ? el("dt", {}, run.status === "waiting" ? "Wakes" : "Next attempt") : null,
    run.next_attempt_at ? el("dd", { id: run.status === "waiting" ? "wakes" : "next-attempt" }, `${time(run.next_attempt_at)} (${until(run.next_attempt_at)})`) : null,
    run.replay_of ? el("dt", {}, "Replay of") : null, run.replay_of ? el("dd", {}, el("a", { href: `#/runs/${run.replay_of}`, id: "replay-of" }, run.replay_of)) : null,
    run.replays.length ? el("dt", {}, "Replays") : null, run.replays.length ? el("dd", {}, ...run.replays.map((r) => el("div", {}, el("a", { href: `#/runs/${r}` }, r)))) : null,
    el("dt", {}, "Event"), el("dd", {}, el("a", { href: `#/events/${run.event_id}` }, run.event_id)));

  // Steps on one time axis, from the run's start to its last step's end.
  const t0 = run.started_at ? new Date(run.started_at).getTime() : 0;
  const ends = [];
  const collect = (list) => {
    for (const s of list || []) {
      if (s.started_at) ends.push(new Date(s.started_at).getTime() + (s.duration_ms || 0));
      collect(s.steps);
      for (const item of s.items || []) collect(item.steps);
    }
  };
  collect(run.steps);
  const span = Math.max(1, ...ends.map((e) => e - t0));
  const steps = run.steps.map((s) => stepView(s, t0, span));
  show(gen,
    el("h1", {}, "Run ", el("span", { class: "mono" }, run.id), " ", badge(run.status)),
    run.error ? el("p", { class: "error", role: "alert", id: "run-error" }, run.error) : null,
    actions,
    el("div", { class: "panel" }, facts),
    el("h2", {}, "Steps"),
    el("div", { class: "timeline" }, ...steps),
    el("h2", {}, "Inbound event"),
    event ? el("div", { class: "panel" },
      el("p", {}, `${event.method} ${event.path} · ${time(event.received_at)} · `, badge(event.outcome)),
      el("details", {}, el("summary", {}, "Headers"), headersTable(event.headers)),
      el("h3", {}, "Body"), jsonBlock(event.body, "event body")) : el("p", { class: "muted" }, "The event is no longer stored."));

  live(gen, (u) => {
    if (!u || u.id === run.id) route();
  });
}

/** One step, with what it holds: a switch's branch and its steps, a
 *  loop's items (each collapsible, failed ones open). */
function stepView(s, t0, span) {
  const axis = el("div", { class: "axis", "aria-hidden": "true" });
  if (s.started_at && t0) {
    const bar = el("span", { class: s.status });
    bar.style.left = `${((new Date(s.started_at).getTime() - t0) / span) * 100}%`;
    bar.style.width = `${Math.max(((s.duration_ms || 0) / span) * 100, 0.5)}%`;
    axis.append(bar);
  }
  const hasBranch = Object.prototype.hasOwnProperty.call(s, "branch");
  const branchText = s.branch === null || s.branch === undefined
    ? (s.status === "pending" ? "Branch: not chosen yet" : "Branch: none (no case held, and there is no default)")
    : s.branch === "default" ? "Branch: default" : `Branch: case ${s.branch}`;
  const items = s.items || [];
  const counts = {};
  for (const i of items) counts[i.status] = (counts[i.status] || 0) + 1;
  return el("div", { class: `step ${s.status}`, "data-step": s.id },
    el("div", { class: "row" }, el("strong", {}, s.id),
      s.uses ? el("span", { class: "uses", title: `the ${s.uses} action of connector ${s.uses.split(".")[0]}` }, `uses ${s.uses}`) : el("span", { class: "muted" }, s.kind),
      badge(s.status),
      el("span", { class: "muted" }, s.started_at ? `${time(s.started_at)} · ${ms(s.duration_ms)}` : "not reached")),
    axis,
    s.error ? el("p", { class: "error step-error" }, s.error) : null,
    hasBranch ? el("p", { class: "branch" }, branchText) : null,
    s.kind === "for_each" && items.length
      ? el("p", { class: "muted item-counts" }, `${items.length} item(s): `, Object.entries(counts).map(([st, n]) => `${n} ${st}`).join(", "))
      : null,
    s.kind !== "for_each" && s.output !== null && s.output !== undefined ? el("details", { open: !s.steps }, el("summary", {}, "Output"), jsonBlock(s.output, `output of ${s.id}`)) : null,
    s.logs.length ? el("details", { open: true }, el("summary", {}, `Log (${s.logs.length})`), el("pre", {}, s.logs.join("\n"))) : null,
    s.attempts.length ? el("div", {}, el("h3", { class: "muted" }, `${s.attempts.length} attempt(s)`), ...s.attempts.map(attemptView)) : null,
    s.steps && s.steps.length ? el("div", { class: "nested" }, ...s.steps.map((c) => stepView(c, t0, span))) : null,
    items.length ? el("div", { class: "nested items" }, ...items.map((item) => itemView(item, t0, span))) : null);
}

function itemView(item, t0, span) {
  const open = item.status === "failed" || item.status === "retrying";
  return el("details", { class: `item ${item.status}`, "data-item": item.index, open },
    el("summary", {}, `Item ${item.index} `, badge(item.status)),
    ...item.steps.map((c) => stepView(c, t0, span)));
}

// ---------------------------------------------------------------- events

async function eventsView(params) {
  const gen = generation;
  const outcome = params.get("outcome") || "";
  const before = params.get("before") || "";
  const q = new URLSearchParams({ limit: PAGE });
  if (outcome) q.set("outcome", outcome);
  if (before) q.set("before", before);
  const page = await api(`/api/events?${q}`);
  const sel = el("select", { id: "f-outcome", onchange: (e) => setQuery("/events", { outcome: e.target.value }) },
    el("option", { value: "" }, "any outcome"), ...OUTCOMES.map((o) => el("option", { value: o, selected: o === outcome }, o)));
  const rows = page.items.map((e) => el("tr", {},
    el("td", { title: time(e.received_at) }, el("a", { href: `#/events/${e.id}` }, ago(e.received_at))),
    el("td", { class: "mono" }, `${e.method} ${e.path}`),
    el("td", {}, badge(e.outcome)),
    el("td", {}, e.reason || (e.workflows || []).join(", ")),
    el("td", {}, ...(e.runs || []).map((r) => el("div", {}, el("a", { href: `#/runs/${r}`, class: "mono" }, r.slice(0, 16) + "…"))))));
  show(gen, el("h1", {}, "Inbound events"),
    el("p", { class: "muted" }, "Every request that reached a workflow path, including the ones that started nothing: “unmatched” means no workflow's when held; “rejected” means the signature check failed."),
    el("div", { class: "row filters" }, el("label", { for: "f-outcome" }, "Outcome"), sel),
    rows.length ? el("table", { "aria-label": "Inbound events, newest first" },
      el("thead", {}, el("tr", {}, el("th", {}, "When"), el("th", {}, "Request"), el("th", {}, "Outcome"), el("th", {}, "Why / workflows"), el("th", {}, "Runs"))),
      el("tbody", {}, ...rows)) : el("div", { class: "panel empty" }, "No events yet."),
    el("div", { class: "row pager" },
      before ? el("button", { type: "button", onclick: () => setQuery("/events", { outcome }) }, "Newest") : null,
      page.next_before ? el("button", { type: "button", onclick: () => setQuery("/events", { outcome, before: page.next_before }) }, "Older events") : null));
}

async function eventView(id) {
  const gen = generation;
  const e = await api(`/api/events/${encodeURIComponent(id)}`);
  show(gen, el("h1", {}, "Event ", el("span", { class: "mono" }, e.id), " ", badge(e.outcome)),
    e.reason ? el("p", { class: e.outcome === "rejected" ? "error" : "muted" }, e.reason) : null,
    el("div", { class: "row" }, el("button", { type: "button", onclick: () => copy(curlFor(e)) }, "Copy as curl")),
    el("div", { class: "panel" }, el("dl", { class: "kv" },
      el("dt", {}, "Received"), el("dd", {}, time(e.received_at)),
      el("dt", {}, "Request"), el("dd", { class: "mono" }, `${e.method} ${e.path}`),
      el("dt", {}, "From"), el("dd", {}, e.source || "—"),
      el("dt", {}, "Workflows"), el("dd", {}, (e.workflows || []).join(", ") || "—"),
      el("dt", {}, "Runs"), el("dd", {}, ...(e.runs || []).map((r) => el("div", {}, el("a", { href: `#/runs/${r}` }, r)))))),
    el("h2", {}, "Headers"), headersTable(e.headers),
    el("h2", {}, "Body"), jsonBlock(e.body, "event body"));
}

// ---------------------------------------------------------------- workflows

/** A workflow's connectors: each with its actions, and the variables it
 *  reads that are not set (or the connector itself missing). */
function connectorsView(list, detailed) {
  if (!list || !list.length) return detailed ? el("span", { class: "muted" }, "none") : null;
  return el("ul", { class: "connectors" }, ...list.map((c) => {
    const unset = (c.env || []).filter((v) => !v.set && !v.optional);
    return el("li", { "data-connector": c.name },
      el("span", { class: "connector" }, c.name),
      detailed ? el("span", { class: "muted" }, ` ${c.actions.join(", ")}`) : null,
      !c.found ? el("span", { class: "unset" }, " not loaded: missing or invalid in the connectors folder") : null,
      unset.length ? el("span", { class: "unset" }, ` unset: ${unset.map((v) => v.name).join(", ")}`) : null,
      detailed && c.found ? el("div", { class: "muted env" }, ...(c.env || []).map((v) =>
        el("code", { class: v.set ? "set" : v.optional ? "optional" : "unset" }, `${v.name}${v.set ? " ✓" : v.optional ? " (optional)" : " ✗"}`))) : null);
  }));
}

async function workflowsView() {
  const gen = generation;
  const [list, stats] = await Promise.all([api("/api/workflows"), api("/api/stats")]);
  const rows = list.map((w) => {
    const url = w.hook ? `${location.origin}${w.hook}` : "";
    const counts = (stats.by_workflow_24h || {})[w.name] || {};
    return el("tr", { "data-workflow": w.name },
      el("td", {}, el("a", { href: `#/workflows/${encodeURIComponent(w.name)}` }, w.name), w.description ? el("div", { class: "muted" }, w.description) : null),
      el("td", {}, badge(w.status), w.serving_version ? el("div", { class: "muted" }, `still serving ${w.serving_version}`) : null,
        ...(w.errors || []).map((m) => el("pre", { class: "error workflow-error" }, m))),
      el("td", {}, connectorsView(w.connectors, false) || el("span", { class: "muted" }, "—")),
      el("td", {}, url ? el("div", { class: "row" }, el("code", {}, url), copyButton(`Copy the URL of ${w.name}`, url)) : "—"),
      el("td", { class: "counts" }, ...Object.entries(counts).map(([s, n]) => el("span", {}, badge(s), `${n} `)), Object.keys(counts).length ? null : el("span", { class: "muted" }, "none")),
      el("td", {}, el("a", { href: `#/runs?workflow=${encodeURIComponent(w.name)}` }, "runs")));
  });
  show(gen, el("h1", {}, "Workflows"),
    el("p", { class: "muted" }, "Give each sender the URL shown. Files are reloaded when they change; a file that stops compiling keeps its last good version serving."),
    rows.length ? el("table", { "aria-label": "Workflows" },
      el("thead", {}, el("tr", {}, el("th", {}, "Workflow"), el("th", {}, "State"), el("th", {}, "Connectors"), el("th", {}, "URL for the sender"), el("th", {}, "Runs, last 24 h"), el("th", {}, ""))),
      el("tbody", {}, ...rows)) : el("div", { class: "panel empty" }, "No workflow files found. Add a *.yaml file to the workflows folder."));
}

async function workflowView(name) {
  const gen = generation;
  const w = await api(`/api/workflows/${encodeURIComponent(name)}`);
  const url = w.hook ? `${location.origin}${w.hook}` : "";
  show(gen, el("h1", {}, w.name, " ", badge(w.status)),
    w.description ? el("p", {}, w.description) : null,
    ...(w.errors || []).map((m) => el("pre", { class: "error workflow-error" }, m)),
    el("div", { class: "panel" }, el("dl", { class: "kv" },
      el("dt", {}, "URL for the sender"), el("dd", {}, url ? el("span", {}, el("code", {}, url), " ", copyButton("Copy URL", url)) : "—"),
      el("dt", {}, "Methods"), el("dd", {}, (w.methods || ["POST"]).join(", ")),
      el("dt", {}, "File"), el("dd", { class: "mono" }, w.file),
      el("dt", {}, "Version"), el("dd", { class: "mono" }, w.version || w.serving_version || "—"),
      el("dt", {}, "Steps"), el("dd", {}, (w.steps || []).map((s) => `${s.id} (${s.uses || s.kind})`).join(" → ") || "—"),
      el("dt", {}, "Connectors"), el("dd", { id: "workflow-connectors" }, connectorsView(w.connectors, true)))),
    el("div", { class: "row" }, el("a", { href: `#/runs?workflow=${encodeURIComponent(w.name)}` }, "Runs of this workflow")),
    el("h2", {}, "Source"), el("pre", {}, w.source || ""));
}

// ---------------------------------------------------------------- start

window.addEventListener("hashchange", route);
route();
stream();
