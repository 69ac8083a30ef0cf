// The recengine dashboard: one page, six views chosen by the URL hash (#overview, #models, #users/ID,
// #items/ID, #live, #experiments/NAME), every figure read from the API with the key the reader entered. Data is put into the
// page as text nodes only (never as HTML): ids and titles come from whoever posted them.

const KEY = "recengine.apiKey";
const SVG = "http://www.w3.org/2000/svg";
const LIVE_ROWS = 200;
const CHART_VERSIONS = 20;  // the newest versions with an NDCG@20 get a bar; the table lists them all
const $ = (selector, root = document) => root.querySelector(selector);

class ApiError extends Error {
  constructor(status, detail) {
    const what = {401: "the API key was refused", 403: "the API key lacks the scope", 404: "not found"};
    super(`${what[status] ?? "the request failed"} (${status}): ${detail}`);
    this.status = status;
  }
}

async function api(path, payload = undefined) {  // a GET, or a POST of payload as JSON
  let response;
  const headers = {"X-API-Key": sessionStorage.getItem(KEY) ?? ""};
  const options = payload === undefined ? {headers}
    : {method: "POST", headers: {...headers, "Content-Type": "application/json"}, body: JSON.stringify(payload)};
  try {
    response = await fetch(path, options);
  } catch (error) {
    throw new Error(`the server cannot be reached (${error.message})`);
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, body.detail ?? response.statusText);
  return body;
}

// el("td", {class: "num"}, "3") → <td class="num">3</td>; children are nodes or text.
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function svg(tag, attributes = {}, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== null) node.textContent = text;
  return node;
}

const number = (n) => n.toLocaleString("en");
const date = (seconds) => new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 19);
// Titles of the items shown so far, so the item explorer can name an item it was sent to by a link.
const titles = new Map();

function itemLink(id, title) {
  if (title) titles.set(id, title);
  return el("a", {href: `#items/${encodeURIComponent(id)}`}, title ?? id);
}

// ----------------------------------------------------------------------------------------------- charts
const WIDTH = 720, HEIGHT = 220, PAD = {left: 48, right: 12, top: 12, bottom: 28};

function lineChart(points, label) {  // points: [{label, value}], in order
  const chart = svg("svg", {viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": label});
  const max = Math.max(1, ...points.map((p) => p.value));
  const x = (i) => PAD.left + (points.length > 1 ? i / (points.length - 1) : 0.5) * (WIDTH - PAD.left - PAD.right);
  const y = (v) => HEIGHT - PAD.bottom - (v / max) * (HEIGHT - PAD.top - PAD.bottom);
  for (const v of [0, max / 2, max]) {
    chart.append(svg("line", {x1: PAD.left, x2: WIDTH - PAD.right, y1: y(v), y2: y(v), class: "grid"}),
                 svg("text", {x: PAD.left - 6, y: y(v) + 4, class: "axis", "text-anchor": "end"}, number(Math.round(v))));
  }
  const line = points.map((p, i) => `${x(i)},${y(p.value)}`).join(" ");
  chart.append(svg("polygon", {points: `${x(0)},${y(0)} ${line} ${x(points.length - 1)},${y(0)}`, class: "area"}),
               svg("polyline", {points: line, class: "line"}));
  const ends = points.length > 1 ? [[0, "start"], [Math.floor((points.length - 1) / 2), "middle"]] : [];
  for (const [i, anchor] of [...ends, [points.length - 1, points.length > 1 ? "end" : "middle"]]) {
    chart.append(svg("text", {x: x(i), y: HEIGHT - 8, class: "axis", "text-anchor": anchor}, points[i].label));
  }
  return chart;
}

function barChart(bars) {  // bars: [{label, value, highlight}]
  const chart = svg("svg", {viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": "NDCG@20 per version"});
  const max = Math.max(1e-9, ...bars.map((b) => b.value));
  const slot = (WIDTH - PAD.left - PAD.right) / bars.length;
  const height = (v) => (v / max) * (HEIGHT - PAD.top - PAD.bottom - 14);
  bars.forEach((bar, i) => {
    const x = PAD.left + i * slot + slot * 0.15, top = HEIGHT - PAD.bottom - height(bar.value);
    chart.append(svg("rect", {x, y: top, width: slot * 0.7, height: height(bar.value),
                              class: bar.highlight ? "bar active" : "bar"}),
                 svg("text", {x: x + slot * 0.35, y: top - 4, class: "value", "text-anchor": "middle"},
                     bar.value.toFixed(4)),
                 svg("text", {x: x + slot * 0.35, y: HEIGHT - 8, class: "axis", "text-anchor": "middle"}, bar.label));
  });
  return chart;
}

// Events per day from the first day to the last, 0 for days without events, so the x axis is time; over more
// than MAX_DAYS days, per month instead (thousands of daily spikes read as noise).
const MAX_DAYS = 180;

function timeSeries(days) {
  if (!days.length) return {unit: "day", points: []};
  const first = Date.parse(days[0].day), last = Date.parse(days.at(-1).day);
  const unit = (last - first) / 86_400_000 < MAX_DAYS ? "day" : "month";
  const key = (day) => (unit === "day" ? day : day.slice(0, 7));
  const counts = new Map();
  for (const d of days) counts.set(key(d.day), (counts.get(key(d.day)) ?? 0) + d.events);
  const start = new Date(first), points = [];
  if (unit === "month") start.setUTCDate(1);
  const next = (t) => (unit === "day" ? t.setUTCDate(t.getUTCDate() + 1) : t.setUTCMonth(t.getUTCMonth() + 1));
  for (const t = start; t <= last; next(t)) {
    const label = key(t.toISOString().slice(0, 10));
    points.push({label, value: counts.get(label) ?? 0});
  }
  return {unit, points};
}

// A metric as stored in a version's metrics: a number, or a report entry such as {mean: ..., low: ...}.
function metric(metrics, name) {
  const value = metrics?.[name];
  return typeof value === "number" ? value : typeof value?.mean === "number" ? value.mean : null;
}

// ----------------------------------------------------------------------------------------------- views
async function overview(view) {
  const [stats, model] = await Promise.all([api("/v1/stats"), api("/v1/model")]);
  $("#counts", view).replaceChildren(...[
    ["users", number(stats.users)], ["items", number(stats.items)], ["events", number(stats.events)],
    ["model versions", number(stats.versions.length)], ["serving", model.model],
  ].map(([name, value]) => el("div", {class: "card", "data-count": name}, el("b", {}, value), el("span", {}, name))));
  const {unit, points} = timeSeries(stats.events_per_day);
  $("h3", view).textContent = `Events per ${unit}`;
  $("#events-chart", view).replaceChildren(points.length ? lineChart(points, `events per ${unit}`)
    : el("p", {}, "No events yet."));
}

async function models(view) {
  const [stats, model] = await Promise.all([api("/v1/stats"), api("/v1/model")]);
  const versions = stats.versions;
  const served = model.source.version;
  $("#serving", view).textContent = `Serving ${model.model} from ` +
    (served === undefined ? `the model directory ${model.source.model_dir}` : `version ${served}`) + ".";
  const names = [...new Set(versions.flatMap((v) => Object.keys(v.metrics ?? {})))]
    .filter((name) => versions.some((v) => metric(v.metrics, name) !== null)).sort();
  $("#versions", view).replaceChildren(
    el("thead", {}, el("tr", {}, ...["version", "model", "status", "created", ...names].map((h) => el("th", {}, h)))),
    el("tbody", {}, ...versions.map((v) => el("tr", {class: v.status === "active" ? "active" : ""},
      el("td", {}, `v${v.id}`), el("td", {}, v.name),
      // A failed version's metrics hold the error: shown when pointing at its status.
      el("td", v.metrics?.error ? {title: v.metrics.error} : {}, v.status === "active" ? "★ active" : v.status),
      el("td", {}, v.created_at.slice(0, 16).replace("T", " ")),
      ...names.map((name) => el("td", {class: "num"}, metric(v.metrics, name)?.toFixed(4) ?? "–"))))));
  const scored = versions.filter((v) => metric(v.metrics, "ndcg@20") !== null).slice(-CHART_VERSIONS);
  $("#ndcg-chart", view).replaceChildren(scored.length
    ? barChart(scored.map((v) => ({label: `v${v.id} ${v.name}`, value: metric(v.metrics, "ndcg@20"),
                                   highlight: v.status === "active"})))
    : el("p", {}, versions.length ? "No version has an NDCG@20 yet." : "The store has no model versions yet."));
  $("h2", view).textContent = `Model versions (${versions.length})`;
}

async function user(view, id) {
  const path = `/v1/users/${encodeURIComponent(id)}`;
  $("input", view).value = id;
  for (const part of ["#history", "#profile", "#recommendations", "#rec-source"]) $(part, view).replaceChildren();
  const [history, profile, recs] = await Promise.allSettled([
    api(`${path}/history?limit=50`), api(`${path}/profile`), api(`${path}/recommendations?k=10&explain=true`)]);
  // A user may have recommendations without a stored history or a profile (e.g. new since training).
  const failed = [history, profile, recs].filter((r) => r.status === "rejected").map((r) => r.reason);
  if (failed.some((e) => !(e instanceof ApiError) || e.status !== 404) || failed.length === 3) throw failed[0];
  $("#history", view).replaceChildren(...(history.value?.events ?? []).map((e) => el("li", {},
    itemLink(e.item, e.title), el("small", {}, ` ${date(e.timestamp)}${e.event ? " · " + e.event : ""}`))));
  if (history.status === "rejected") $("#history", view).append(el("li", {class: "note"}, history.reason.message));
  $("#profile", view).replaceChildren(profile.status === "fulfilled" ? profileView(profile.value)
    : el("p", {class: "note"}, profile.reason.message));
  $("#recommendations", view).replaceChildren(...(recs.value?.items ?? []).map((r) => el("li", {},
    itemLink(r.item, r.title), el("small", {}, ` ${r.score.toFixed(3)}`),
    r.text ? el("p", {class: "why"}, r.text) : null)));
  $("#rec-source", view).textContent = recs.status === "fulfilled" ? `source: ${recs.value.source}`
    : recs.reason.message;
}

function profileView(profile) {
  const a = profile.activity;
  const facts = [["interactions", number(a.interactions)], ["distinct items", number(a.distinct_items)],
    ["first seen", a.first_seen], ["last seen", a.last_seen], ["active days", number(a.active_days)],
    ["per active day", a.per_active_day.toFixed(1)], ["mean rating", a.mean_rating?.toFixed(2)],
    ["mainstreamness", a.mainstreamness?.toFixed(2)], ["segment", profile.segment?.name],
    ["events since training", number(profile.events_since_training)]].filter(([, v]) => v !== null && v !== undefined);
  const top = profile.categories.slice(0, 8);
  const max = Math.max(1e-9, ...top.map((c) => c.weight));
  return el("div", {},
    el("div", {class: "bars"}, ...top.map((c) => el("div", {class: "bar-row"},
      el("span", {}, c.name), el("div", {class: "bar", style: `width: ${(100 * c.weight / max).toFixed(1)}%`}),
      el("small", {}, `${(100 * c.weight).toFixed(0)}%`)))),
    el("dl", {}, ...facts.flatMap(([name, value]) => [el("dt", {}, name), el("dd", {}, String(value))])),
    ...profile.notes.map((n) => el("p", {class: "note"}, n)));
}

async function item(view, id) {
  $("input", view).value = id;
  $("#similar", view).replaceChildren();
  $("#similar-title", view).textContent = `Similar to ${titles.get(id) ?? id}`;
  const similar = await api(`/v1/items/${encodeURIComponent(id)}/similar?k=10`);
  $("#similar", view).replaceChildren(...similar.items.map((s) => el("li", {},
    itemLink(s.item, s.title), el("small", {}, ` ${s.score.toFixed(3)}`))));
}

// The live view polls while it is shown, asking only for events after the newest it has; the next poll is set
// once one has answered, so a slow answer never overlaps the next. Leaving the view ends the run.
const live = {timer: null, lastId: 0, run: 0};

async function poll(view) {
  const {events} = await api(`/v1/events/recent?limit=50${live.lastId ? `&after_id=${live.lastId}` : ""}`);
  if (!events.length) return;
  const fresh = live.lastId ? "new" : "";  // the first page is the recent past, not news
  live.lastId = events[0].id;
  const rows = $("tbody", view);
  rows.prepend(...events.map((e) => el("tr", {class: fresh}, el("td", {class: "num"}, String(e.id)),
    el("td", {}, date(e.timestamp)), el("td", {}, el("a", {href: `#users/${encodeURIComponent(e.user)}`}, e.user)),
    el("td", {}, itemLink(e.item, e.title)), el("td", {}, e.event ?? ""), el("td", {class: "num"}, e.rating ?? ""))));
  while (rows.children.length > LIVE_ROWS) rows.lastElementChild.remove();
  setTimeout(() => events.forEach((_, i) => rows.children[i]?.classList.remove("new")), 1500);
}

function startLive(view) {
  const run = live.run;
  const tick = async () => {
    try {
      await poll(view);
      showError(view, null);
    } catch (error) {
      showError(view, error);
    }
    if (run === live.run) live.timer = setTimeout(tick, 1000);
  };
  return tick();
}

function stopLive() {
  live.run += 1;
  clearTimeout(live.timer);
}

// --------------------------------------------------------------------------------------------- experiments
const SERIES = ["#2f6fdf", "#e07a1f", "#2e9e5b", "#9b51e0", "#c2185b"];
const percent = (v) => (v === null || v === undefined ? "–" : `${(100 * v).toFixed(1)}%`);
const signed = (v) => (v === null || v === undefined ? "–" : `${v >= 0 ? "+" : ""}${(100 * v).toFixed(1)}%`);

async function experiments(view, name) {
  const list = await api("/v1/experiments");
  $("#experiment-list", view).replaceChildren(
    el("thead", {}, el("tr", {}, ...["experiment", "surface", "allocation", "variants", "holdout", "status"]
      .map((h) => el("th", {}, h)))),
    el("tbody", {}, ...list.map((e) => el("tr", {class: e.name === name ? "active" : ""},
      el("td", {}, el("a", {href: `#experiments/${encodeURIComponent(e.name)}`}, e.name)), el("td", {}, e.surface),
      el("td", {}, e.allocation), el("td", {}, e.variants.map((v) => `${v.name} ${v.share}`).join(", ")),
      el("td", {class: "num"}, percent(e.holdout)), el("td", {}, e.running ? "running" : "stopped")))));
  const detail = $("#experiment-detail", view);
  const chosen = name || list.at(-1)?.name;
  if (!chosen) return detail.replaceChildren(el("p", {class: "note"}, "No experiments yet."));
  const analysis = await api(`/v1/experiments/${encodeURIComponent(chosen)}/analysis`);
  detail.replaceChildren(...experimentView(analysis));
}

function experimentView(analysis) {
  const e = analysis.experiment, metric = e.primary_metric, primary = analysis.metrics[metric];
  const parts = [el("h3", {}, `${e.name}: ${metric} per exposure`),
    el("p", {class: `decision ${analysis.decision.decision.split(" ")[0]}`, id: "decision"},
       `${analysis.decision.decision[0].toUpperCase()}${analysis.decision.decision.slice(1)}: ${analysis.decision.reason}`)];
  if (primary.srm_flag) {
    parts.push(el("p", {class: "warning", id: "srm-warning"}, `Sample ratio mismatch: p = ` +
      `${primary.srm_p_value.toExponential(1)}; the observed split does not match the design, so the lifts ` +
      `cannot be trusted until the assignment is fixed.`));
  }
  parts.push(el("p", {class: "note"}, `${number(Object.values(analysis.exposures).reduce((a, b) => a + b, 0))} ` +
    `exposures; ${number(analysis.outcomes.attributed)} outcomes attributed, ` +
    `${number(analysis.outcomes.unattributed)} unattributed.`));
  if (primary.status !== "ok") return [...parts, el("p", {class: "note"}, primary.reason)];
  const rows = [[primary.control.variant, primary.control, null], ...Object.entries(primary.variants)
    .map(([n, v]) => [n, v, v])];
  parts.push(el("table", {id: "experiment-variants"},
    el("thead", {}, el("tr", {}, ...["variant", "units", "exposures", "rate", "95% interval", "lift",
      "lift 95% interval", "p", "p sequential"].map((h) => el("th", {}, h)))),
    el("tbody", {}, ...rows.map(([n, v, lift]) => el("tr", {},
      el("td", {}, n), el("td", {class: "num"}, number(v.units)), el("td", {class: "num"}, number(v.exposures)),
      el("td", {class: "num"}, percent(v.rate)),
      el("td", {class: "num"}, `${percent(v.rate_ci_low)} … ${percent(v.rate_ci_high)}`),
      el("td", {class: "num"}, lift ? signed(lift.lift) : "control"),
      el("td", {class: "num"}, lift ? `${signed(lift.ci_low)} … ${signed(lift.ci_high)}` : ""),
      el("td", {class: "num"}, lift?.p_value?.toFixed(4) ?? ""),
      el("td", {class: "num"}, lift?.p_value_sequential?.toFixed(4) ?? ""))))));
  parts.push(el("h3", {}, "Lift over time (cumulative, 95% interval)"),
             el("div", {class: "chart", id: "lift-chart"}, liftChart(analysis.timeline)));
  return parts;
}

function liftChart(timeline) {  // one line per treatment variant with its interval as a band
  const names = [...new Set(timeline.flatMap((t) => Object.keys(t.variants)))];
  const chart = svg("svg", {viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": "lift over time"});
  const values = timeline.flatMap((t) => Object.values(t.variants).flatMap((v) => [v.ci_low, v.ci_high]))
    .filter((v) => v !== null && Number.isFinite(v));
  const low = Math.min(0, ...values), high = Math.max(0, ...values, 1e-9);
  const x = (i) => PAD.left + (timeline.length > 1 ? i / (timeline.length - 1) : 0.5) * (WIDTH - PAD.left - PAD.right);
  const y = (v) => HEIGHT - PAD.bottom - ((v - low) / (high - low)) * (HEIGHT - PAD.top - PAD.bottom);
  chart.append(svg("line", {x1: PAD.left, x2: WIDTH - PAD.right, y1: y(0), y2: y(0), class: "zero"}));
  for (const v of [low, high]) {
    chart.append(svg("text", {x: PAD.left - 6, y: y(v) + 4, class: "axis", "text-anchor": "end"}, signed(v)));
  }
  names.forEach((name, k) => {
    const color = SERIES[k % SERIES.length];
    const at = timeline.map((t, i) => [i, t.variants[name]]).filter(([, v]) => v && v.lift !== null);
    if (!at.length) return;
    const upper = at.map(([i, v]) => `${x(i)},${y(v.ci_high ?? v.lift)}`);
    const lower = at.map(([i, v]) => `${x(i)},${y(v.ci_low ?? v.lift)}`).reverse();
    chart.append(svg("polygon", {points: [...upper, ...lower].join(" "), class: "band", fill: color}),
                 svg("polyline", {points: at.map(([i, v]) => `${x(i)},${y(v.lift)}`).join(" "), class: "line",
                                  style: `stroke: ${color}`, "data-variant": name}),
                 svg("text", {x: WIDTH - PAD.right, y: PAD.top + 12 + 14 * k, class: "legend", fill: color,
                              "text-anchor": "end"}, name));
  });
  const ends = [[0, "start"], [timeline.length - 1, "end"]];
  for (const [i, anchor] of timeline.length > 1 ? ends : [[0, "middle"]]) {
    chart.append(svg("text", {x: x(i), y: HEIGHT - 8, class: "axis", "text-anchor": anchor},
                     timeline[i].at.slice(0, 16).replace("T", " ")));
  }
  return chart;
}

// The form's variants: one a line, NAME=SHARE[,model_version=N][,diversity=X] (as `recengine experiment create`).
function variantsOf(text) {
  return text.split("\n").map((line) => line.trim()).filter(Boolean).map((line) => {
    const [head, ...options] = line.split(",");
    const [name, share] = head.split("=");
    const variant = {name: name.trim(), share: Number(share)};
    for (const option of options) {
      const [key, value] = option.split("=");
      variant[key.trim()] = Number(value);
    }
    return variant;
  });
}

$("#experiment-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const guardrails = form.get("guardrail_metrics").split(",").map((m) => m.trim()).filter(Boolean);
  try {
    const created = await api("/v1/experiments", {
      name: form.get("name").trim(), surface: form.get("surface").trim(), variants: variantsOf(form.get("variants")),
      holdout: Number(form.get("holdout")), allocation: form.get("allocation"),
      primary_metric: form.get("primary_metric").trim(), guardrail_metrics: guardrails});
    $("#experiment-form-error").textContent = "";
    location.hash = `experiments/${encodeURIComponent(created.name)}`;
  } catch (error) {
    $("#experiment-form-error").textContent = error.message;
  }
});

// ----------------------------------------------------------------------------------------------- wiring
const VIEWS = {overview, models, users: user, items: item, live: startLive, experiments};

function showError(view, error) {
  const box = $(".error", view);
  box.textContent = error ? error.message : "";
  if (error instanceof ApiError && error.status === 401) askForKey(error.message);
}

function askForKey(message = "") {
  stopLive();
  document.querySelectorAll(".view").forEach((v) => { v.hidden = true; });
  $("#login").hidden = false;
  $("#change-key").hidden = true;
  $("#login-error").textContent = message;
  $("#key-input").focus();
}

async function route() {
  if (!sessionStorage.getItem(KEY)) return askForKey();
  stopLive();
  const [name, ...rest] = (location.hash.slice(1) || "overview").split("/");
  const id = decodeURIComponent(rest.join("/"));
  const view = document.getElementById(VIEWS[name] ? name : "overview");
  document.querySelectorAll(".view").forEach((v) => { v.hidden = v !== view; });
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("current", a.hash === `#${view.id}`));
  $("#login").hidden = true;
  $("#change-key").hidden = false;
  showError(view, null);
  if ((view.id === "users" || view.id === "items") && !id) return;
  try {
    await VIEWS[view.id](view, id);
  } catch (error) {
    showError(view, error);
  }
}

$("#key-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, $("#key-input").value.trim());
  try {
    await api("/v1/stats");  // check the key before showing anything
  } catch (error) {
    sessionStorage.removeItem(KEY);
    $("#login-error").textContent = error.message;
    return;
  }
  $("#key-input").value = "";
  route();
});

document.querySelectorAll("form.lookup").forEach((form) => form.addEventListener("submit", (event) => {
  event.preventDefault();
  location.hash = `${form.dataset.view}/${encodeURIComponent(new FormData(form).get("id").trim())}`;
}));

$("#change-key").addEventListener("click", () => { sessionStorage.removeItem(KEY); askForKey(); });
window.addEventListener("hashchange", route);
route();
