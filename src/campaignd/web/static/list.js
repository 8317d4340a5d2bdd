// The campaign list: both kinds, filters, live counts.
import { api } from "./api.js";
import { badge, esc, render } from "./dom.js";

function progress(done, total) {
  const pct = total > 0 ? Math.min(100, Math.round((100 * done) / total)) : 0;
  return `<progress max="100" value="${pct}" aria-label="Progress ${pct}%">${pct}%</progress>`;
}

async function rows(kind, status) {
  const query = status ? `?status=${encodeURIComponent(status)}` : "";
  const [traffic, messages] = await Promise.all([
    kind === "message" ? [] : api("GET", `/api/traffic/campaigns${query}`),
    kind === "traffic" ? [] : api("GET", `/api/campaigns${query}`),
  ]);
  const t = traffic.map((c) => ({
    kind: "traffic", id: c.id, name: c.name, status: c.status,
    counts: `${Math.round(c.requests_per_minute)} rpm · ${c.total_users} users`,
    progress: "",
  }));
  const m = messages.map((c) => ({
    kind: "message", id: c.id, name: c.name, status: c.status,
    counts: `${c.sent_count} sent · ${c.failed_count} failed`,
    progress: progress(c.sent_count + c.failed_count, c.total_recipients),
  }));
  return [...t, ...m];
}

export async function listView(signal) {
  render(`
    <h1>Campaigns</h1>
    <form class="filters" id="filters">
      <label for="filter-kind">Kind</label>
      <select id="filter-kind" name="kind">
        <option value="">All</option><option value="traffic">Traffic</option>
        <option value="message">Message</option>
      </select>
      <label for="filter-status">Status</label>
      <select id="filter-status" name="status">
        <option value="">All</option>
        ${["draft", "scheduled", "running", "paused", "stopped", "completed", "failed"]
          .map((s) => `<option>${s}</option>`).join("")}
      </select>
    </form>
    <p id="list-error" class="error" role="alert" hidden></p>
    <div class="table-wrap"><table>
      <thead><tr><th>Name</th><th>Kind</th><th>Status</th><th>Progress</th><th>Counts</th></tr></thead>
      <tbody id="campaign-rows"><tr><td colspan="5">Loading…</td></tr></tbody>
    </table></div>`);
  const form = document.getElementById("filters");
  const refresh = async () => {
    const kind = form.kind.value, status = form.status.value;
    try {
      const items = await rows(kind, status);
      document.getElementById("campaign-rows").innerHTML = items.length
        ? items.map((c) => `<tr>
            <td><a href="#/${c.kind === "traffic" ? "traffic" : "messages"}/${c.id}">${esc(c.name)}</a></td>
            <td>${c.kind}</td><td>${badge(c.status)}</td><td>${c.progress}</td><td>${esc(c.counts)}</td>
          </tr>`).join("")
        : `<tr><td colspan="5">No campaigns yet. Create one from the menu.</td></tr>`;
      document.getElementById("list-error").hidden = true;
    } catch (err) {
      const box = document.getElementById("list-error");
      if (box) { box.textContent = err.message; box.hidden = false; }
    }
  };
  form.addEventListener("change", refresh);
  await refresh();
  const timer = setInterval(refresh, 2000);
  signal.addEventListener("abort", () => clearInterval(timer));
}
