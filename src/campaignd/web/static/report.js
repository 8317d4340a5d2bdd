// The report page of one campaign: totals, the time series as charts and a table, per-variant
// counts and the A/B decision (messages), failures by reason; JSON and CSV downloads.
import { api, download } from "./api.js";
import { messageChart, trafficCharts } from "./chart.js";
import { badge, esc, render, showError } from "./dom.js";
import { stepTables } from "./steps.js";

const SHOWN_ROWS = 120;
const BUCKETS = [1, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400];

// About a hundred points over the campaign's life, in a round bucket size.
async function bucketFor(id) {
  const c = await api("GET", `/api/campaigns/${id}`);
  const from = Date.parse(c.started_at || c.created_at);
  const to = c.completed_at && c.status === "completed" ? Date.parse(c.completed_at) : Date.now();
  const wanted = Math.max(1, (to - from) / 1000 / 100);
  return BUCKETS.find((b) => b >= wanted) || BUCKETS[BUCKETS.length - 1];
}

function table(caption, headers, rows) {
  if (!rows.length) return `<h2>${esc(caption)}</h2><p class="hint">Nothing yet.</p>`;
  return `<h2>${esc(caption)}</h2><div class="table-wrap"><table>
    <thead><tr>${headers.map((h) => `<th scope="col">${esc(h)}</th>`).join("")}</tr></thead>
    <tbody>${rows.map((r) => `<tr>${r.map((v) => `<td>${esc(v)}</td>`).join("")}</tr>`).join("")}</tbody>
  </table></div>`;
}

function totals(pairs) {
  return `<dl class="stats">${pairs
    .map(([label, value]) => `<div><dt>${esc(label)}</dt><dd data-stat="${esc(label)}">${esc(value)}</dd></div>`)
    .join("")}</dl>`;
}

const time = (at) => new Date(at).toLocaleString();
const percent = (value) => (value === null || value === undefined ? "–" : `${(100 * value).toFixed(2)}%`);
const ms = (value) => (value === null || value === undefined ? "–" : value.toFixed(2));

function messageReport(r) {
  const c = r.counts;
  const variants = Object.entries(r.per_variant).map(([name, v]) => [
    name, v.sent, v.failed, v.sending, v.click, v.conversion, v.unsubscribe,
  ]);
  const ab = r.ab_test;
  const abPart = ab ? `
    <h2>A/B test</h2>
    ${totals([
      ["Metric", ab.metric.replace("_", " ")], ["Sample", `${ab.sample_percent}%`],
      ["Phase", ab.phase.replaceAll("_", " ")], ["Winner", ab.winner || "not yet"],
    ])}
    ${table("Scores", ["Variant", "Value", "Measured over"],
      ab.scores.map((s) => [s.variant, percent(s.value), s.of]))}` : "";
  return {
    title: r.campaign.name,
    body: `
      ${totals([
        ["Sent", c.sent_count], ["Failed", c.failed_count], ["In flight", c.sending_count],
        ["Recipients", c.total_recipients],
      ])}
      <section class="charts"><div id="chart-a" class="chart-box"></div></section>
      ${table("Per variant", ["Variant", "Sent", "Failed", "In flight", "Clicks", "Conversions", "Unsubscribes"], variants)}
      ${abPart}
      ${table("Failures by reason", ["Reason", "Count"], r.failures_by_reason.map((f) => [f.reason, f.count]))}
      ${table(`Over time (per ${r.bucket_seconds} s)`, ["At", "Sent", "Failed"],
        r.series.slice(-SHOWN_ROWS).reverse().map((p) => [time(p.at), p.sent, p.failed]))}`,
    charts() {
      messageChart(document.getElementById("chart-a"), r.series, `${r.bucket_seconds} s`);
    },
  };
}

function trafficReport(r) {
  const s = r.stats;
  const w = r.windows;
  return {
    title: r.campaign.name,
    body: `
      ${totals([
        ["Requests", s.requests_total], ["Failed", s.requests_failed], ["Dropped", s.requests_dropped],
        ["Success rate", percent(s.success_rate)], ["Achieved rpm", s.achieved_rpm.toFixed(0)],
        ["p50 ms", s.latency_ms.p50], ["p90 ms", s.latency_ms.p90], ["p99 ms", s.latency_ms.p99],
        ["Max ms", s.latency_ms.max],
      ])}
      <section class="charts">
        <div id="chart-a" class="chart-box"></div><div id="chart-b" class="chart-box"></div>
      </section>
      ${stepTables(s)}
      ${table(r.bucket_seconds ? `Over time (per ${r.bucket_seconds} s; latency: the highest window's)` : "Over time (per second)",
        ["At", "Requests", "Failed", "Dropped", "rpm", "Target rpm", "p50 ms", "p99 ms", "Max ms"],
        w.slice(-SHOWN_ROWS).reverse().map((p) => [
          time(p.at), p.requests, p.failed, p.dropped, p.rpm.toFixed(0), p.target_rpm, ms(p.p50_ms), ms(p.p99_ms), ms(p.max_ms),
        ]))}`,
    charts() {
      trafficCharts(document.getElementById("chart-a"), document.getElementById("chart-b"), w);
    },
  };
}

export async function reportView(kindName, id) {
  const base = kindName === "traffic"
    ? `/api/traffic/campaigns/${id}/report` : `/api/campaigns/${id}/report`;
  const params = kindName === "traffic" ? {} : { bucket_seconds: await bucketFor(id) };
  const url = (extra) => `${base}?${new URLSearchParams({ ...params, ...extra })}`;
  const report = await api("GET", url({}));
  const page = kindName === "traffic" ? trafficReport(report) : messageReport(report);
  const file = `${kindName === "traffic" ? "traffic-campaign" : "campaign"}-${id}`;
  render(`
    <p><a href="#/${kindName}/${id}">← Back to the monitor</a></p>
    <h1 id="report-title">Report: ${esc(page.title)}</h1>
    <p>Status: ${badge(report.campaign.status)}</p>
    <div class="actions">
      <button type="button" id="download-json">Download JSON</button>
      <button type="button" id="download-csv">Download CSV</button>
    </div>
    <p id="download-error" class="error" role="alert" hidden></p>
    ${page.body}`);
  page.charts();
  const save = (format, name) => async () => {
    showError("download-error", null);
    try {
      await download(url({ format }), name);
    } catch (err) {
      showError("download-error", err);
    }
  };
  document.getElementById("download-json").addEventListener("click", save("json", `${file}.json`));
  document.getElementById("download-csv").addEventListener("click", save("csv", `${file}.csv`));
}
