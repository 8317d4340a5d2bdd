// The report page of one campaign: totals, the time series as charts and a table, per-variant
// counts and the A/B decision (messages), requests by name and failures by reason (traffic);
// JSON, CSV and a one-file HTML download (charts and data inline, nothing fetched when opened).
import { api, download, saveBlob } from "./api.js";
import { messageChart, trafficCharts } from "./chart.js";
import { badge, esc, render, setTitle, showError, whilePending } from "./dom.js";
import { failuresTable, requestsTable } from "./monitor.js";
import { checkTables } from "./steps.js";

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
  return `<h2>${esc(caption)}</h2><p class="scroll-hint" aria-hidden="true">Scroll sideways for more columns →</p>
  <div class="table-wrap"><table>
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
      ${totals([["Hard bounces", r.bounces.hard], ["Soft bounces", r.bounces.soft]])}
      ${table("Links", ["URL", "Clicks", "Unique clicks"],
        r.links.map((l) => [l.url, l.clicks, l.unique_clicks]))}
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
  const c = r.campaign;
  return {
    title: c.name,
    body: `
      <dl class="facts">
        <div><dt>Target</dt><dd>${esc(c.target_url)}</dd></div>
        <div><dt>Rate</dt><dd>${esc(c.requests_per_minute)} requests per minute, ${esc(c.total_users)} virtual users</dd></div>
        <div><dt>Duration</dt><dd>${esc(c.duration_minutes)} min${c.start_time ? `, started ${esc(time(c.start_time))}` : ""}</dd></div>
      </dl>
      ${totals([
        ["Requests", s.requests_total], ["Failed", s.requests_failed], ["Dropped", s.requests_dropped],
        ["Success rate", percent(s.success_rate)], ["Average rpm (whole run)", s.achieved_rpm.toFixed(0)],
        ["p50 ms", s.latency_ms.p50], ["p90 ms", s.latency_ms.p90], ["p99 ms", s.latency_ms.p99],
        ["Max ms", s.latency_ms.max],
      ])}
      <section class="charts">
        <div id="chart-a" class="chart-box"></div><div id="chart-b" class="chart-box"></div>
        <div id="chart-c" class="chart-box"></div>
      </section>
      <h2>Requests by name</h2>${requestsTable(s)}${checkTables(s)}
      <h2>Failures by reason</h2>${failuresTable(s.errors, s.requests_failed)}
      ${table(r.bucket_seconds ? `Over time (per ${r.bucket_seconds} s; latency: the highest window's)` : "Over time (per second)",
        ["At", "Requests", "Failed", "Dropped", "rpm", "Target rpm", "p50 ms", "p99 ms", "Max ms"],
        w.slice(-SHOWN_ROWS).reverse().map((p) => [
          time(p.at), p.requests, p.failed, p.dropped, p.rpm.toFixed(0), p.target_rpm, ms(p.p50_ms), ms(p.p99_ms), ms(p.max_ms),
        ]))}`,
    charts() {
      trafficCharts({
        rate: document.getElementById("chart-a"), latency: document.getElementById("chart-b"),
        users: document.getElementById("chart-c"),
      }, w);
    },
  };
}

// One self-contained file: the page as drawn (SVG charts included), the stylesheet inline,
// the report's JSON inline; no script runs and nothing is fetched when it is opened.
async function htmlReport(report, title) {
  const css = await (await fetch("/static/style.css")).text();
  const content = document.getElementById("report-content").cloneNode(true);
  const data = JSON.stringify(report).replace(/</g, "\\u003c");
  const stamp = new Date().toLocaleString();
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>${esc(title)}</title><style>${css}</style></head>
<body><main><h1>${esc(title)}</h1><p class="hint">Exported from campaignd on ${esc(stamp)}.</p>
${content.innerHTML}</main>
<script type="application/json" id="report-data">${data}</script>
</body></html>`;
}

export async function reportView(kindName, id, signal) {
  const base = kindName === "traffic"
    ? `/api/traffic/campaigns/${id}/report` : `/api/campaigns/${id}/report`;
  const params = kindName === "traffic" ? {} : { bucket_seconds: await bucketFor(id) };
  const url = (extra) => `${base}?${new URLSearchParams({ ...params, ...extra })}`;
  const report = await api("GET", url({}));
  const page = kindName === "traffic" ? trafficReport(report) : messageReport(report);
  const file = `${kindName === "traffic" ? "traffic-campaign" : "campaign"}-${id}`;
  setTitle(`Report: ${page.title}`);
  render(`
    <p><a href="#/${kindName}/${id}">← Back to the monitor</a></p>
    <h1 id="report-title">Report: ${esc(page.title)}</h1>
    <div class="actions">
      <button type="button" id="download-html">Download HTML report</button>
      <button type="button" id="download-json" class="secondary">Download JSON</button>
      <button type="button" id="download-csv" class="secondary">Download CSV</button>
    </div>
    <p id="download-error" class="error" role="alert" hidden></p>
    <div id="report-content">
    <p>Status: ${badge(report.campaign.status)}</p>
    ${page.body}
    </div>`);
  page.charts();
  window.addEventListener("campaignd:redraw", () => page.charts(), { signal });
  const save = (button, format, name) => () => whilePending(button, async () => {
    showError("download-error", null);
    try {
      if (format === "html") {
        const html = await htmlReport(report, `Report: ${page.title}`);
        saveBlob(new Blob([html], { type: "text/html" }), name);
      } else {
        await download(url({ format }), name);
      }
    } catch (err) {
      showError("download-error", err);
    }
  });
  for (const format of ["html", "json", "csv"]) {
    const button = document.getElementById(`download-${format}`);
    button.addEventListener("click", save(button, format, `${file}-report.${format}`.replace("-report.json", ".json").replace("-report.csv", ".csv")));
  }
}
