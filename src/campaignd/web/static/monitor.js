// The live monitor of one campaign: what it is, why it stopped, actions (each disabled while
// its request is in flight; Stop and Delete ask first), figures, charts and tables, polled
// every second. #monitor-extra is left for other panels (e.g. recipients) to hook into.
import { api, download } from "./api.js";
import { messageChart, trafficCharts } from "./chart.js";
import { holdersText } from "./nodes.js";
import {
  badge, confirmAction, duration, esc, markWideTables, number, render, setTitle, showError,
  showFieldErrors, whilePending,
} from "./dom.js";
import { checkTables } from "./steps.js";
import { accountWords, profileWords } from "./words.js";
import { recipientsPanel } from "./recipients.js";
import { sendTest, testSendFields } from "./testsend.js";

const fmt = (n, digits = 0) => (n === null || n === undefined || Number.isNaN(n) ? "–"
  : Number(n).toLocaleString("en", { maximumFractionDigits: digits }));
const ms = (n) => (n === null || n === undefined ? "–" : `${fmt(n, n < 10 ? 2 : 1)}`);

export function failuresTable(errors, failed) {
  const rows = Object.entries(errors || {}).sort((a, b) => b[1] - a[1]);
  if (!rows.length) return `<p class="hint">${failed ? "Failures were counted without a reason." : "No failures."}</p>`;
  return `<div class="table-wrap"><table class="stack" id="failure-reasons">
    <thead><tr><th scope="col">Reason</th><th scope="col">Count</th><th scope="col">Share of failures</th></tr></thead>
    <tbody>${rows.map(([reason, count]) => `<tr><td data-label="Reason">${esc(reason)}</td>
      <td data-label="Count">${fmt(count)}</td>
      <td data-label="Share">${failed ? `${((100 * count) / failed).toFixed(1)}%` : "–"}</td></tr>`).join("")}</tbody>
  </table></div>`;
}

// Per request name (journeys' steps) when the service reports them; else all requests as one.
export function requestsTable(stats) {
  const steps = stats.steps?.length ? stats.steps : [{
    name: "All requests", requests: stats.requests_total, failed: stats.requests_failed,
    p50: stats.latency_ms.p50, p90: stats.latency_ms.p90, p99: stats.latency_ms.p99, total: true,
  }];
  return `<div class="table-wrap"><table class="stack" id="request-names">
    <thead><tr><th scope="col">Request</th><th scope="col">Requests</th><th scope="col">Failures</th>
      <th scope="col">p50 ms</th><th scope="col">p90 ms</th><th scope="col">p99 ms</th></tr></thead>
    <tbody>${steps.map((s) => `<tr${s.total ? ' class="total"' : ""}><td data-label="Request">${esc(s.name)}</td>
      <td data-label="Requests">${fmt(s.requests)}</td><td data-label="Failures">${fmt(s.failed)}</td>
      <td data-label="p50 ms">${ms(s.p50)}</td><td data-label="p90 ms">${ms(s.p90)}</td>
      <td data-label="p99 ms">${ms(s.p99)}</td></tr>`).join("")}</tbody>
  </table></div>${stats.steps?.length ? "" : '<p class="hint">Figures per request name appear when the service reports them.</p>'}`;
}

function facts(pairs) {
  return pairs.map(([label, value, raw]) => `<div><dt>${esc(label)}</dt><dd data-fact="${esc(label)}">${raw ? value : esc(value)}</dd></div>`).join("");
}

const TRAFFIC = {
  api: "/api/traffic/campaigns",
  load: (id) => api("GET", `/api/traffic/campaigns/${id}/info`),
  record: (id) => api("GET", `/api/traffic/campaigns/${id}`),
  series: (id) => api("GET", `/api/traffic/campaigns/${id}/series?limit=300`),
  status: (id, status) => api("PUT", `/api/traffic/campaigns/${id}/status`, { status }),
  async extras(c) {
    const profiles = await Promise.all(c.config.profile_list.map((p) =>
      api("GET", `/api/traffic/profiles/${p.id}`).catch(() => ({ name: p.name, requests: [] }))));
    return { profiles };
  },
  actions(c) {
    const s = c.status, id = c.campaign_id;
    return [
      s === "draft" && ["Start", async () => {
        await this.status(id, "running");
        await api("POST", "/api/traffic/generate", { campaign_id: id });
      }],
      s === "running" && ["Pause", () => this.status(id, "paused")],
      (s === "paused" || s === "stopped") && ["Resume", () => this.status(id, "running")],
      (s === "running" || s === "paused") && ["Stop", () => this.status(id, "stopped"), {
        title: `Stop ${c.name}?`, confirm: "Stop campaign", cancel: "Keep running",
        text: "Traffic generation ends within a second. You can resume it later for the time it has left.",
      }],
    ].filter(Boolean);
  },
  facts(c, extras) {
    const total = c.config.duration_minutes * 60;
    const elapsed = c.stats.active_seconds;
    const ended = ["completed", "stopped", "failed"].includes(c.status);
    return [
      ["Target", c.target_url],
      ["Profiles", extras.profiles.map((p) => `<strong>${esc(p.name)}</strong>: ${esc(profileWords(p))}`).join("<br>") || "–", true],
      ["Virtual users", fmt(c.config.total_users)],
      ["Duration", duration(total)],
      ["Elapsed", duration(elapsed)],
      ["Remaining", c.status === "completed" ? "none (completed)" : duration(Math.max(0, total - elapsed)) + (ended ? " (not running)" : "")],
      ...(c.start_time ? [["Started", new Date(c.start_time).toLocaleString()]] : []),
    ];
  },
  summary(c, series) {
    const s = c.stats;
    const last = series.points.length ? series.points[series.points.length - 1] : null;
    return [
      ["Requests", s.requests_total], ["Succeeded", s.requests_succeeded],
      ["Failed", s.requests_failed], ["Dropped", s.requests_dropped],
      ["Success rate", `${(100 * s.success_rate).toFixed(1)}%`],
      ["Current rpm", last && c.traffic_generation_active ? fmt(last.rpm) : "–"],
      ["Average rpm (whole run)", fmt(s.achieved_rpm)],
      ["Target rpm", fmt(c.config.requests_per_minute)],
      ["p50 ms", s.latency_ms.p50], ["p90 ms", s.latency_ms.p90],
      ["p99 ms", s.latency_ms.p99], ["Max ms", s.latency_ms.max],
    ];
  },
  tables(c) {
    return `<h2>Requests by name</h2>${requestsTable(c.stats)}${checkTables(c.stats)}
      <h2>Failures by reason</h2>${failuresTable(c.stats.errors, c.stats.requests_failed)}`;
  },
  editFields: (c) => `
    <label for="edit-name">Name</label>
    <input id="edit-name" name="name" data-field="name" value="${esc(c.name)}">
    <label for="edit-rpm">Requests per minute</label>
    <input id="edit-rpm" name="requests_per_minute" data-field="requests_per_minute" type="number" min="0.001" step="any"
           value="${esc(c.config.requests_per_minute)}">`,
  save: (id, data) => api("PATCH", `/api/traffic/campaigns/${id}`, {
    name: data.name, requests_per_minute: number(data.requests_per_minute),
  }),
  charts(data) {
    trafficCharts({
      rate: document.getElementById("chart-a"), latency: document.getElementById("chart-b"),
      users: document.getElementById("chart-c"),
    }, data.points);
  },
  id: (c) => c.campaign_id,
  problem: (c, record) => (c.status === "failed" ? record?.last_error : null),
  warnings: () => [],
};

const MESSAGES = {
  api: "/api/campaigns",
  load: (id) => api("GET", `/api/campaigns/${id}`),
  record: () => null,
  series: (id) => api("GET", `/api/campaigns/${id}/series?limit=300`),
  act: (id, action) => api("POST", `/api/campaigns/${id}/${action}`),
  async extras(c) {
    const [account, audience] = await Promise.all([
      api("GET", `/api/accounts/${c.account_id}`).catch(() => null),
      api("GET", `/api/audiences/${c.audience_id}`).catch(() => null),
    ]);
    return { account, audience };
  },
  actions(c) {
    const s = c.status;
    const left = c.total_recipients > c.sent_count + c.sending_count;
    const stop = {
      title: `Stop ${c.name}?`, confirm: "Stop campaign", cancel: "Keep sending",
      text: "Messages in flight finish; nobody else gets it until you resume. Resuming never messages anyone twice.",
    };
    const start = c.warnings.length ? {
      title: `Start ${c.name} anyway?`, confirm: "Start anyway", cancel: "Not now", text: c.warnings.join(" "),
    } : null;
    return [
      (s === "draft" || s === "scheduled") && ["Start", () => this.act(c.id, "start"), start],
      s === "running" && ["Pause", () => this.act(c.id, "pause")],
      (s === "paused" || s === "stopped") && ["Resume", () => this.act(c.id, "resume")],
      s === "completed" && left && ["Resume", () => this.act(c.id, "resume")],
      (s === "running" || s === "paused") && ["Stop", () => this.act(c.id, "stop"), stop],
    ].filter(Boolean);
  },
  facts(c, extras) {
    return [
      ["Audience", extras.audience ? `${extras.audience.name} (${fmt(extras.audience.contact_count)} contacts)` : `#${c.audience_id}`],
      ["Account", extras.account ? `${extras.account.name}: ${accountWords(extras.account)}` : `#${c.account_id}`],
      ...(c.subject ? [["Subject", c.subject]] : []),
      ["Message", `<pre class="message">${esc(c.message)}</pre>`, true],
      ...(c.segment ? [["Segment", JSON.stringify(c.segment)]] : []),
      ...(c.variants ? [["Variants", c.variants.map((v) => `${v.name}${v.weight !== 1 ? ` ×${v.weight}` : ""}`).join(", ")]] : []),
      ...(c.start_at ? [["Starts at", new Date(c.start_at).toLocaleString()]] : []),
      ...(c.send_window ? [["Sends between", `${c.send_window.start} and ${c.send_window.end} (${c.send_window.timezone})`]] : []),
      ...(c.ab_test ? [["A/B winner", c.ab_winner || `testing on ${c.ab_test.sample_percent}%`]] : []),
      ["Pauses after", c.max_consecutive_failures === 0 ? "never pauses on failures" : `${c.max_consecutive_failures ?? "the service's default number of"} failures in a row`],
    ];
  },
  summary: (c) => [
    ["Sent", c.sent_count], ["Failed", c.failed_count], ["In flight", c.sending_count],
    ["Recipients", c.total_recipients], ["Left to send", Math.max(0, c.total_recipients - c.sent_count - c.sending_count)],
    ["Limit", c.limit], ["Rate", c.rate_per_minute ? `${c.rate_per_minute}/min` : "unlimited"],
  ],
  tables: () => "",
  editFields: (c, extras) => `
    <label for="edit-name">Name</label>
    <input id="edit-name" name="name" data-field="name" value="${esc(c.name)}">
    ${extras.account?.channel === "smtp" || c.subject ? `<label for="edit-subject">Subject</label>
    <input id="edit-subject" name="subject" data-field="subject" value="${esc(c.subject)}">` : ""}
    <label for="edit-message">Message</label>
    <textarea id="edit-message" name="message" data-field="message" rows="4">${esc(c.message)}</textarea>
    <label for="edit-limit">Limit</label>
    <input id="edit-limit" name="limit" data-field="limit" type="number" min="0" step="1" value="${esc(c.limit)}">
    <label for="edit-rate">Rate (messages per minute, empty for no limit)</label>
    <input id="edit-rate" name="rate_per_minute" data-field="rate_per_minute" type="number" min="0.001" step="any" value="${esc(c.rate_per_minute)}">
    <label class="check"><input type="checkbox" name="track_links" ${c.track_links ? "checked" : ""}>
      Track links</label>
    ${testSendFields()}`,
  save: (id, data) => api("PATCH", `/api/campaigns/${id}`, {
    name: data.name, message: data.message, limit: number(data.limit),
    rate_per_minute: number(data.rate_per_minute) ?? null,
    track_links: data.track_links === "on",
    ...(data.subject !== undefined ? { subject: data.subject || null } : {}),
  }),
  sendTest,
  charts(data) {
    messageChart(document.getElementById("chart-a"), data.points, "second");
  },
  id: (c) => c.id,
  problem: (c) => (c.status === "paused" && c.pause_reason) || (["failed", "stopped"].includes(c.status) ? c.last_error : null),
  warnings: (c) => {
    const notes = [...c.warnings];
    if (c.status === "completed" && c.total_recipients <= c.sent_count + c.sending_count) {
      notes.push("Everyone this campaign can reach has the message. Add contacts or raise the limit to send more, then Resume.");
    }
    return notes;
  },
};

export async function monitorView(kindName, id, signal) {
  const kind = kindName === "traffic" ? TRAFFIC : MESSAGES;
  const reportBase = kindName === "traffic"
    ? `/api/traffic/campaigns/${id}/report` : `/api/campaigns/${id}/report`;
  const file = `${kindName === "traffic" ? "traffic-campaign" : "campaign"}-${id}`;
  setTitle(`Campaign ${id}`);
  render(`
    <p><a href="#/">← All campaigns</a></p>
    <h1 id="campaign-name">Campaign ${esc(id)}</h1>
    <p>Status: <span id="campaign-status" aria-live="polite"></span> <span id="archived-note" class="hint" hidden>(archived)</span></p>
    <p>Running on: <span id="campaign-nodes"></span></p>
    <p id="campaign-problem" class="problem" role="status" hidden></p>
    <ul id="campaign-warnings" class="warnings" role="status" hidden></ul>
    <div class="actions" id="actions"></div>
    <p id="action-error" class="error" role="alert" hidden></p>
    <dl class="facts" id="facts"></dl>
    <p class="reports"><a id="report-page" href="#/${kindName}/${id}/report">Full report</a> ·
      download <button type="button" class="link-button" id="report-json">JSON</button> ·
      <button type="button" class="link-button" id="report-csv">CSV</button></p>
    <p id="download-error" class="error" role="alert" hidden></p>
    ${kindName === "messages" ? `<div class="actions" role="tablist" aria-label="Campaign views">
      <button type="button" role="tab" id="tab-overview" aria-selected="true" aria-controls="panel-overview">Overview</button>
      <button type="button" role="tab" id="tab-recipients" aria-selected="false" aria-controls="panel-recipients">Recipients</button>
    </div>` : ""}
    <section id="panel-overview" role="tabpanel" aria-labelledby="tab-overview">
    <dl class="stats" id="stats"></dl>
    <section class="charts">
      <div id="chart-a" class="chart-box"></div>
      ${kindName === "traffic" ? '<div id="chart-b" class="chart-box"></div><div id="chart-c" class="chart-box"></div>' : ""}
    </section>
    <section id="tables"></section>
    </section>
    <section id="panel-recipients" role="tabpanel" aria-labelledby="tab-recipients" hidden></section>
    <div id="monitor-extra"></div>
    <dialog id="edit-dialog" aria-labelledby="edit-title">
      <form id="edit-form" method="dialog" class="form" novalidate>
        <h2 id="edit-title">Edit campaign</h2>
        <p class="hint">A running campaign uses the new values for everything not yet sent.</p>
        <div id="edit-fields"></div>
        <p id="edit-error" class="error" role="alert" hidden></p>
        <div class="actions">
          <button type="submit" value="save" id="edit-save">Save</button>
          <button type="button" id="edit-cancel" class="secondary">Cancel</button>
        </div>
      </form>
    </dialog>`);
  let current = null;
  let record = null;
  let extras = null;
  let shownActions = "";
  const dialog = document.getElementById("edit-dialog");

  const act = async (fn, question) => {
    showError("action-error", null);
    if (question && !(await confirmAction(question))) return;
    const buttons = [...document.querySelectorAll("#actions button")];
    await whilePending(buttons, async () => {
      try {
        await fn();
      } catch (err) {
        showError("action-error", err);
      }
      await refresh();
    });
  };

  const lifecycle = (c) => {
    const s = c.status;
    const active = ["scheduled", "running", "paused"].includes(s);
    const archived = Boolean((record || c).archived_at);
    const editable = s === "draft" || (kindName === "messages" && s === "scheduled");
    const base = kindName === "traffic" ? `/api/traffic/campaigns/${id}` : `/api/campaigns/${id}`;
    const list = [
      !["completed", "failed"].includes(s) || kindName === "messages"
        ? ["Edit", editable ? () => { location.hash = `#/${kindName}/${id}/edit`; } : openEdit, null, true] : null,
      ["Clone", async () => {
        const copy = await api("POST", `${base}/clone`);
        location.hash = `#/${kindName}/${copy.id}/edit`;
      }],
      !active && (archived
        ? ["Unarchive", () => api("POST", `${base}/unarchive`)]
        : ["Archive", () => api("POST", `${base}/archive`)]),
      !active && ["Delete", async () => {
        await api("DELETE", base);
        location.hash = "#/";
      }, { title: `Delete ${c.name}?`, confirm: "Delete campaign", cancel: "Keep it",
        text: "Its results and delivery records go too. This cannot be undone; Archive keeps them." }],
    ];
    return list.filter(Boolean);
  };

  const drawActions = () => {
    const actions = [...kind.actions(current), ...lifecycle(current)];
    const signature = actions.map(([label]) => label).join("|");
    if (signature === shownActions) return;
    shownActions = signature;
    const box = document.getElementById("actions");
    box.replaceChildren();
    for (const [label, fn, question, local] of actions) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = label;
      if (["Stop", "Delete"].includes(label)) button.className = "danger";
      else if (!["Start", "Resume", "Pause"].includes(label)) button.className = "secondary";
      button.addEventListener("click", () => (local ? fn() : act(fn, question)));
      box.appendChild(button);
    }
  };

  function openEdit() {
    document.getElementById("edit-fields").innerHTML = kind.editFields(current, extras || {});
    showError("edit-error", null);
    dialog.showModal();
  }

  document.getElementById("edit-cancel").addEventListener("click", () => dialog.close());
  document.getElementById("edit-fields").addEventListener("click", async (event) => {
    if (event.target.id !== "send-test") return;
    const note = document.getElementById("test-result");
    showError("edit-error", null);
    note.textContent = "Sending…";
    await whilePending(event.target, async () => {
      try {
        note.textContent = await kind.sendTest(kind.id(current), document.getElementById("edit-form"));
      } catch (err) {
        note.textContent = "";
        showError("edit-error", err);
      }
    });
  });
  let recipients = null;
  const showTab = (name) => {
    for (const tab of ["overview", "recipients"]) {
      const button = document.getElementById(`tab-${tab}`);
      if (button) button.setAttribute("aria-selected", String(tab === name));
      document.getElementById(`panel-${tab}`).hidden = tab !== name;
    }
    if (name === "recipients") {
      const panel = document.getElementById("panel-recipients");
      if (!recipients) recipients = recipientsPanel(panel, id, () => refresh());
      else recipients.refresh();
    }
  };
  if (kindName === "messages") {
    document.getElementById("tab-overview").addEventListener("click", () => showTab("overview"));
    document.getElementById("tab-recipients").addEventListener("click", () => showTab("recipients"));
  }
  document.getElementById("edit-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    const data = Object.fromEntries(new FormData(form).entries());
    await whilePending(document.getElementById("edit-save"), async () => {
      try {
        await kind.save(kind.id(current), data);
        dialog.close();
        await refresh();
      } catch (err) {
        showFieldErrors(form, err, "edit-error");
      }
    });
  });
  const save = (format) => () => whilePending(document.getElementById(`report-${format}`), async () => {
    showError("download-error", null);
    try {
      await download(`${reportBase}?format=${format}`, `${file}.${format}`);
    } catch (err) {
      showError("download-error", err);
    }
  });
  document.getElementById("report-json").addEventListener("click", save("json"));
  document.getElementById("report-csv").addEventListener("click", save("csv"));

  const refresh = async () => {
    try {
      const [campaign, series, row] = await Promise.all([kind.load(id), kind.series(id), kind.record(id)]);
      if (signal.aborted) return;
      current = campaign;
      record = row;
      if (!extras) extras = await kind.extras(campaign);
      setTitle(campaign.name);
      document.getElementById("campaign-name").textContent = campaign.name;
      document.getElementById("campaign-status").innerHTML = badge(campaign.status);
      document.getElementById("campaign-nodes").textContent = holdersText(campaign.nodes);
      document.getElementById("archived-note").hidden = !(row || campaign).archived_at;
      const problem = kind.problem(campaign, row);
      const problemBox = document.getElementById("campaign-problem");
      problemBox.hidden = !problem;
      problemBox.textContent = problem || "";
      const warnings = kind.warnings(campaign);
      const warningBox = document.getElementById("campaign-warnings");
      warningBox.hidden = !warnings.length;
      warningBox.innerHTML = warnings.map((w) => `<li>${esc(w)}</li>`).join("");
      document.getElementById("facts").innerHTML = facts(kind.facts(campaign, extras));
      document.getElementById("stats").innerHTML = kind.summary(campaign, series)
        .map(([label, value]) => `<div><dt>${esc(label)}</dt><dd data-stat="${esc(label)}">${esc(value)}</dd></div>`)
        .join("");
      drawActions();
      kind.charts(series);
      const tables = kind.tables(campaign);
      const box = document.getElementById("tables");
      if (box.dataset.html !== tables) {
        box.innerHTML = tables;
        box.dataset.html = tables;
        markWideTables(box);
      }
    } catch (err) {
      if (!signal.aborted) showError("action-error", err);
    }
  };
  await refresh();
  const timer = setInterval(refresh, 1000);
  signal.addEventListener("abort", () => clearInterval(timer));
}
