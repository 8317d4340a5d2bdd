// The live monitor of one campaign: status, actions, edit dialog, charts; polled every second.
import { api } from "./api.js";
import { messageChart, trafficCharts } from "./chart.js";
import { holdersText } from "./nodes.js";
import { badge, esc, number, render, showError } from "./dom.js";

const KINDS = {
  traffic: {
    load: (id) => api("GET", `/api/traffic/campaigns/${id}/info`),
    series: (id) => api("GET", `/api/traffic/campaigns/${id}/series?limit=300`),
    status: (id, status) => api("PUT", `/api/traffic/campaigns/${id}/status`, { status }),
    actions(c) {
      const s = c.status;
      return [
        s === "draft" && ["Start", () => this.start(c.campaign_id)],
        s === "running" && ["Pause", () => this.status(c.campaign_id, "paused")],
        s === "paused" && ["Resume", () => this.status(c.campaign_id, "running")],
        (s === "running" || s === "paused") && ["Stop", () => this.status(c.campaign_id, "stopped")],
        s === "stopped" && ["Resume", () => this.status(c.campaign_id, "running")],
      ].filter(Boolean);
    },
    async start(id) {
      await this.status(id, "running");
      await api("POST", "/api/traffic/generate", { campaign_id: id });
    },
    summary(c) {
      const s = c.stats;
      return [
        ["Requests", s.requests_total], ["Succeeded", s.requests_succeeded],
        ["Failed", s.requests_failed], ["Dropped", s.requests_dropped],
        ["Success rate", `${(100 * s.success_rate).toFixed(1)}%`],
        ["Achieved rpm", s.achieved_rpm.toFixed(0)], ["Target rpm", c.config.requests_per_minute],
        ["p50 ms", s.latency_ms.p50], ["p99 ms", s.latency_ms.p99], ["Max ms", s.latency_ms.max],
      ];
    },
    editFields: (c) => `
      <label for="edit-rpm">Requests per minute</label>
      <input id="edit-rpm" name="requests_per_minute" type="number" min="0.001" step="any"
             value="${esc(c.config.requests_per_minute)}">`,
    save: (id, data) => api("PATCH", `/api/traffic/campaigns/${id}`, {
      requests_per_minute: number(data.requests_per_minute),
    }),
    charts(container, data) {
      trafficCharts(container.querySelector("#chart-a"), container.querySelector("#chart-b"), data.points);
    },
    name: (c) => c.name,
    id: (c) => c.campaign_id,
  },
  messages: {
    load: (id) => api("GET", `/api/campaigns/${id}`),
    series: (id) => api("GET", `/api/campaigns/${id}/series?limit=300`),
    act: (id, action) => api("POST", `/api/campaigns/${id}/${action}`),
    actions(c) {
      const s = c.status;
      return [
        (s === "draft" || s === "scheduled") && ["Start", () => this.act(c.id, "start")],
        s === "running" && ["Stop", () => this.act(c.id, "stop")],
        s === "paused" && ["Resume", () => this.act(c.id, "resume")],
        (s === "stopped" || s === "completed") && ["Resume", () => this.act(c.id, "resume")],
      ].filter(Boolean);
    },
    summary: (c) => [
      ["Sent", c.sent_count], ["Failed", c.failed_count], ["In flight", c.sending_count],
      ["Recipients", c.total_recipients], ["Limit", c.limit],
      ["Rate", c.rate_per_minute ? `${c.rate_per_minute}/min` : "unlimited"],
      ...(c.start_at ? [["Starts at", new Date(c.start_at).toLocaleString()]] : []),
      ...(c.ab_test ? [["A/B winner", c.ab_winner || `testing on ${c.ab_test.sample_percent}%`]] : []),
    ],
    editFields: (c) => `
      <label for="edit-message">Message</label>
      <textarea id="edit-message" name="message" rows="4">${esc(c.message)}</textarea>
      <label for="edit-limit">Limit</label>
      <input id="edit-limit" name="limit" type="number" min="0" step="1" value="${esc(c.limit)}">`,
    save: (id, data) => api("PATCH", `/api/campaigns/${id}`, {
      message: data.message, limit: number(data.limit),
    }),
    charts(container, data) {
      messageChart(container.querySelector("#chart-a"), data.points, "second");
    },
    name: (c) => c.name,
    id: (c) => c.id,
  },
};

export async function monitorView(kindName, id, signal) {
  const kind = KINDS[kindName];
  const reportBase = kindName === "traffic"
    ? `/api/traffic/campaigns/${id}/report` : `/api/campaigns/${id}/report`;
  render(`
    <p><a href="#/">← All campaigns</a></p>
    <h1 id="campaign-name">Campaign ${esc(id)}</h1>
    <p>Status: <span id="campaign-status" aria-live="polite"></span></p>
    <p>Running on: <span id="campaign-nodes"></span></p>
    <div class="actions" id="actions"></div>
    <p id="action-error" class="error" role="alert" hidden></p>
    <p class="reports"><a id="report-page" href="#/${kindName}/${id}/report">Full report</a> ·
      download <a id="report-json" href="${reportBase}" download>JSON</a> ·
      <a id="report-csv" href="${reportBase}?format=csv" download>CSV</a></p>
    <dl class="stats" id="stats"></dl>
    <section class="charts">
      <div id="chart-a" class="chart-box"></div>
      ${kindName === "traffic" ? '<div id="chart-b" class="chart-box"></div>' : ""}
    </section>
    <dialog id="edit-dialog" aria-labelledby="edit-title">
      <form id="edit-form" method="dialog" class="form">
        <h2 id="edit-title">Edit campaign</h2>
        <div id="edit-fields"></div>
        <p id="edit-error" class="error" role="alert" hidden></p>
        <div class="actions">
          <button type="submit" value="save">Save</button>
          <button type="button" id="edit-cancel">Cancel</button>
        </div>
      </form>
    </dialog>`);
  let current = null;
  let shownActions = "";
  const dialog = document.getElementById("edit-dialog");

  const act = async (fn) => {
    showError("action-error", null);
    try {
      await fn();
      await refresh();
    } catch (err) {
      showError("action-error", err);
    }
  };

  const drawActions = () => {
    const actions = kind.actions(current);
    const signature = actions.map(([label]) => label).join("|") + "|Edit";
    if (signature === shownActions) return;
    shownActions = signature;
    const box = document.getElementById("actions");
    box.replaceChildren();
    for (const [label, fn] of [...actions, ["Edit", openEdit]]) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = label;
      button.addEventListener("click", () => (label === "Edit" ? fn() : act(fn)));
      box.appendChild(button);
    }
  };

  function openEdit() {
    document.getElementById("edit-fields").innerHTML = kind.editFields(current);
    showError("edit-error", null);
    dialog.showModal();
  }

  document.getElementById("edit-cancel").addEventListener("click", () => dialog.close());
  document.getElementById("edit-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(event.target).entries());
    try {
      await kind.save(kind.id(current), data);
      dialog.close();
      await refresh();
    } catch (err) {
      showError("edit-error", err);
    }
  });

  const refresh = async () => {
    try {
      const [campaign, series] = await Promise.all([kind.load(id), kind.series(id)]);
      current = campaign;
      document.getElementById("campaign-name").textContent = kind.name(campaign);
      document.getElementById("campaign-status").innerHTML = badge(campaign.status);
      document.getElementById("campaign-nodes").textContent = holdersText(campaign.nodes);
      document.getElementById("stats").innerHTML = kind.summary(campaign)
        .map(([label, value]) => `<div><dt>${label}</dt><dd data-stat="${esc(label)}">${esc(value)}</dd></div>`)
        .join("");
      drawActions();
      kind.charts(document, series);
    } catch (err) {
      showError("action-error", err);
    }
  };
  await refresh();
  const timer = setInterval(refresh, 1000);
  signal.addEventListener("abort", () => clearInterval(timer));
}
