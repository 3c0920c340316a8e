// ShopStream dashboard: signs in with an API key (kept in sessionStorage, never in the URL),
// then polls the REST API every few seconds and redraws with Plotly (served locally).
"use strict";

const KEY = "shopstream.apiKey";
const REFRESH_MS = 3000;
let timer = null;

const $ = (id) => document.getElementById(id);
const money = (v) => v == null ? "–" : Number(v).toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const count = (v) => v == null ? "–" : Number(v).toLocaleString();
const percent = (v) => v == null ? "–" : (100 * Number(v)).toFixed(2) + " %";

class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

async function api(path) {
  const response = await fetch(path, { headers: { "X-API-Key": sessionStorage.getItem(KEY) || "" } });
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail; } catch (_) { /* keep the status text */ }
    throw new ApiError(response.status, typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return response.json();
}

function plot(id, traces, layout) {
  Plotly.react($(id), traces, Object.assign({ margin: { t: 40, r: 10, b: 40, l: 50 } }, layout), { displayModeBar: false, responsive: true });
}

async function dataEnd() {
  const coverage = await api("/api/v1/coverage");
  if (!coverage.last_minute) return null;
  return new Date(new Date(coverage.last_minute).getTime() + 60_000);
}

async function executive() {
  const end = await dataEnd();
  if (!end) { $("exec-until").textContent = "(no events yet)"; return; }
  const start = new Date(end.getTime() - 3600_000);
  const window = `from=${start.toISOString()}&to=${end.toISOString()}`;
  $("exec-until").textContent = end.toISOString().replace("T", " ").slice(0, 16) + " UTC";
  const [kpis, series] = await Promise.all([
    api(`/api/v1/kpis?${window}`), api(`/api/v1/timeseries?${window}&grain=minute`),
  ]);
  // Money is never added across currencies: one figure only when the API gives one.
  const priced = (v, code) => v == null ? "–" : `${money(v)} ${code && code !== "XXX" ? code : ""}`.trim();
  $("kpi-revenue").textContent = kpis.revenue != null ? priced(kpis.revenue, kpis.currency)
    : kpis.revenue_by_currency.map((m) => priced(m.revenue, m.currency)).join(" · ");
  $("kpi-revenue").title = kpis.revenue_note || "";
  $("kpi-orders").textContent = count(kpis.orders);
  $("kpi-aov").textContent = priced(kpis.average_order_value, kpis.currency);
  $("kpi-conversion").textContent = percent(kpis.conversion_rate);
  $("kpi-users").textContent = count(kpis.active_users);
  $("kpi-events").textContent = count(kpis.events);

  // The charts show one currency: the KPIs' (one currency, or all converted), else the
  // currency with the most orders, saying so.
  const shown = kpis.currency || (kpis.revenue_by_currency[0] || {}).currency;
  const valueOf = (point) => point.currency === shown ? Number(point.revenue)
    : kpis.currency && point.reporting_revenue != null ? Number(point.reporting_revenue) : null;
  const byCategory = {};
  for (const point of series) {
    const value = valueOf(point);
    if (value == null) continue;
    (byCategory[point.category] ||= { x: [], y: [] });
    byCategory[point.category].x.push(point.window_start);
    byCategory[point.category].y.push(value);
  }
  const others = kpis.currency ? "" : kpis.revenue_by_currency.length > 1 ? " only (no exchange rates for the others)" : "";
  plot("chart-revenue", Object.entries(byCategory).map(([name, s]) => ({ type: "bar", name, x: s.x, y: s.y })),
    { title: { text: `Net revenue per minute${shown ? ", " + shown : ""}${others}` }, barmode: "stack" });
  const totals = Object.entries(byCategory).map(([name, s]) => [name, s.y.reduce((a, b) => a + b, 0)]);
  plot("chart-categories", [{ type: "bar", x: totals.map((t) => t[0]), y: totals.map((t) => t[1]) }],
    { title: { text: `Revenue by category (last hour${shown ? ", " + shown : ""})` } });

  const day = end.toISOString().slice(0, 10);
  const products = await api(`/api/v1/products/top?from=${day}&to=${day}&limit=10`);
  $("top-products").querySelector("tbody").innerHTML = products.map((p) =>
    `<tr><td>${escapeHtml(p.product_id)}</td><td>${count(p.views)}</td><td>${count(p.purchases)}</td><td>${escapeHtml(priced(p.revenue, p.currency))}</td></tr>`).join("");
}

async function operations() {
  try {
    const [pipeline, quality, batches, alerts, firing, runs, checks] = await Promise.all([
      api("/api/v1/pipeline"), api("/api/v1/quality"), api("/api/v1/batches?limit=60"),
      api("/api/v1/alerts?limit=20"), api("/api/v1/alerts?state=firing&limit=500"),
      api("/api/v1/jobs/runs?limit=12"), api("/api/v1/quality/checks"),
    ]);
    operationsTables(alerts, firing.length, runs, checks);
    $("ops-denied").hidden = true;
    $("ops-rate").textContent = count(pipeline.events_per_second_5m);
    $("ops-since").textContent = pipeline.seconds_since_last_commit == null ? "–" : pipeline.seconds_since_last_commit.toFixed(1);
    $("ops-lag").textContent = pipeline.kafka_lag == null ? "n/a" : count(pipeline.kafka_lag);
    $("ops-duplicates").textContent = count(quality.duplicates);
    $("ops-late").textContent = count(quality.late_events);
    $("ops-quarantine").textContent = count(quality.open_quarantine);
    const ordered = batches.slice().reverse();
    plot("chart-batches", [
      { type: "scatter", mode: "lines+markers", name: "load ms", x: ordered.map((b) => b.committed_at), y: ordered.map((b) => Number(b.load_ms)) },
      { type: "scatter", mode: "lines+markers", name: "parse ms", x: ordered.map((b) => b.committed_at), y: ordered.map((b) => Number(b.parse_ms)) },
    ], { title: { text: "Batch durations" } });
    const rules = Object.entries(quality.quarantined_by_rule);
    plot("chart-rules", [{ type: "bar", x: rules.map((r) => r[0]), y: rules.map((r) => r[1]) }],
      { title: { text: "Open quarantine by rule" } });
  } catch (error) {
    if (error instanceof ApiError && error.status === 403) { $("ops-denied").hidden = false; return; }
    throw error;
  }
}

const when = (t) => t == null ? "" : escapeHtml(t.replace("T", " ").slice(0, 19));

function operationsTables(alerts, firing, runs, checks) {
  $("ops-firing").textContent = `${firing < 500 ? firing : "500+"} firing`;
  $("ops-firing").className = firing ? "badge bad" : "badge good";
  $("ops-alerts-empty").hidden = alerts.length > 0;
  $("ops-alerts").querySelector("tbody").innerHTML = alerts.map((a) =>
    `<tr class="${a.resolved_at == null ? "firing" : "resolved"}"><td>${when(a.started_at)}</td><td>${escapeHtml(a.severity)}</td>` +
    `<td>${escapeHtml(a.rule)}</td><td>${escapeHtml(a.summary)}</td>` +
    `<td>${a.resolved_at == null ? "firing" : "resolved " + when(a.resolved_at)}</td></tr>`).join("");
  $("ops-jobs").querySelector("tbody").innerHTML = runs.map((r) =>
    `<tr><td>${escapeHtml(r.job)}</td><td>${escapeHtml(r.target_date || "")}</td><td>${escapeHtml(r.trigger)}</td>` +
    `<td class="${r.status === "failed" ? "bad" : ""}">${escapeHtml(r.status)}${r.error ? ": " + escapeHtml(r.error) : ""}</td>` +
    `<td>${when(r.finished_at)}</td><td>${count(r.rows_affected)}</td></tr>`).join("");
  $("ops-checks").querySelector("tbody").innerHTML = checks.map((c) =>
    `<tr><td>${escapeHtml(c.suite)}</td><td>${escapeHtml(c.expectation.replace(/^expect_/, "").replaceAll("_", " "))}</td>` +
    `<td>${escapeHtml(c.column_name || "")}</td><td>${escapeHtml(c.target_date || "")}</td>` +
    `<td class="${c.success ? "good" : "bad"}">${c.success ? "passed" : "failed"}</td></tr>`).join("");
}

// Data Docs open as pages of their own: a cookie for /quality-docs lets the browser in.
$("ops-docs").addEventListener("click", async () => {
  const response = await fetch("/api/v1/quality/docs/session", {
    method: "POST", headers: { "X-API-Key": sessionStorage.getItem(KEY) || "" },
  });
  if (response.ok) window.open("/quality-docs/index.html", "_blank", "noopener");
});

async function customers() {
  const [segments, clv] = await Promise.all([api("/api/v1/segments"), api("/api/v1/segments/clv")]);
  $("customers-empty").hidden = segments.length > 0;
  plot("chart-segments", [{ type: "bar", x: segments.map((s) => s.segment), y: segments.map((s) => s.customers) }],
    { title: { text: "RFM segments (customers)" } });
  plot("chart-clv", [{ type: "bar", x: clv.map((b) => `${money(b.low)}–${money(b.high)}`), y: clv.map((b) => b.customers) }],
    { title: { text: "Predicted 365-day value (customers)" } });
}

async function fraudPage() {
  const end = new Date(Date.now() + 60_000);
  const window = `from=${new Date(end.getTime() - 7 * 86400_000).toISOString()}&to=${end.toISOString()}`;
  try {
    const [summary, alerts] = await Promise.all([
      api(`/api/v1/fraud/summary?${window}`), api(`/api/v1/fraud/alerts?${window}&status=open&limit=20`),
    ]);
    $("fraud-denied").hidden = true;
    $("fraud-scored").textContent = count(summary.orders_scored);
    $("fraud-open").textContent = count(summary.open);
    $("fraud-confirmed").textContent = count(summary.confirmed);
    $("fraud-dismissed").textContent = count(summary.dismissed);
    $("fraud-precision").textContent = percent(summary.precision);
    plot("chart-fraud-hours", [{ type: "bar", x: summary.alerts_per_hour.map((h) => h.hour), y: summary.alerts_per_hour.map((h) => h.alerts), width: 0.8 * 3600_000 }],
      { title: { text: "Alerts per hour" }, xaxis: { type: "date" } });
    plot("chart-fraud-reasons", [{ type: "bar", x: summary.reasons.map((r) => r.reason), y: summary.reasons.map((r) => r.alerts) }],
      { title: { text: "Alerts by reason" } });
    plot("chart-fraud-scores", [{ type: "bar", x: summary.score_distribution.map((b) => `${b.low.toFixed(1)}–${b.high.toFixed(1)}`), y: summary.score_distribution.map((b) => b.orders) }],
      { title: { text: "Orders by risk score" }, yaxis: { type: "log" } });
    $("fraud-alerts").querySelector("tbody").innerHTML = alerts.map((a) =>
      `<tr><td>${a.alert_id}</td><td>${escapeHtml(a.event_timestamp.replace("T", " ").slice(0, 19))}</td><td>${escapeHtml(a.user_id)}</td>` +
      `<td>${money(a.amount)}</td><td>${Number(a.score).toFixed(2)}</td><td>${escapeHtml(a.reasons.join(", "))}</td>` +
      `<td><button type="button" data-alert="${a.alert_id}" data-verdict="confirmed">Confirm</button> ` +
      `<button type="button" data-alert="${a.alert_id}" data-verdict="dismissed">Dismiss</button></td></tr>`).join("");
  } catch (error) {
    if (error instanceof ApiError && error.status === 403) { $("fraud-denied").hidden = false; return; }
    throw error;
  }
}

// Review buttons: one listener on the table (the page allows no inline script).
$("fraud-alerts").addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-alert]");
  if (!button) return;
  button.disabled = true;
  const response = await fetch(`/api/v1/fraud/alerts/${button.dataset.alert}`, {
    method: "POST",
    headers: { "X-API-Key": sessionStorage.getItem(KEY) || "", "Content-Type": "application/json" },
    body: JSON.stringify({ status: button.dataset.verdict }),
  });
  if (!response.ok && response.status !== 409) console.error(await response.text());
  refresh();
});

const PAGES = { executive, operations, customers, fraud: fraudPage };

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

async function refresh() {
  const page = (location.hash || "#executive").slice(1);
  for (const section of document.querySelectorAll(".page")) section.hidden = section.id !== page;
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("active", link.dataset.page === page);
  try {
    await (PAGES[page] || executive)();
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) { signOut("The key is not valid (any more)."); return; }
    console.error(error);
  }
}

function start() {
  $("sign-in").hidden = true;
  $("nav").hidden = false;
  clearInterval(timer);
  refresh();
  timer = setInterval(refresh, REFRESH_MS);
}

function signOut(message) {
  clearInterval(timer);
  sessionStorage.removeItem(KEY);
  for (const section of document.querySelectorAll(".page")) section.hidden = true;
  $("nav").hidden = true;
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = message || "";
}

$("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, $("api-key").value.trim());
  $("api-key").value = "";
  try {
    await api("/api/v1/coverage");
    $("sign-in-error").textContent = "";
    start();
  } catch (error) {
    signOut(error instanceof ApiError && error.status === 401 ? "That key is not valid." : String(error));
  }
});
$("sign-out").addEventListener("click", () => signOut());
window.addEventListener("hashchange", refresh);
if (sessionStorage.getItem(KEY)) start();
