// The campaign list: both kinds, filters kept in the URL, live counts.
import { api } from "./api.js";
import { badge, esc, render, setTitle } from "./dom.js";

const STATUSES = ["draft", "scheduled", "running", "paused", "stopped", "completed", "failed"];

function progress(done, total) {
  const pct = total > 0 ? Math.min(100, Math.round((100 * done) / total)) : 0;
  return `<progress max="100" value="${pct}" aria-label="Progress ${pct}%">${pct}%</progress>`;
}

async function rows(kind, status, archived) {
  const params = new URLSearchParams();
  if (status) params.set("status", status);
  if (archived) params.set("archived", "true");
  const query = params.toString() ? `?${params}` : "";
  const [traffic, messages] = await Promise.all([
    kind === "message" ? [] : api("GET", `/api/traffic/campaigns${query}`),
    kind === "traffic" ? [] : api("GET", `/api/campaigns${query}`),
  ]);
  const t = traffic.map((c) => ({
    kind: "traffic", id: c.id, name: c.name, status: c.status,
    counts: `${Math.round(c.requests_per_minute).toLocaleString("en")} rpm · ${c.total_users} users`,
    progress: "", created: c.created_at,
  }));
  const m = messages.map((c) => ({
    kind: "message", id: c.id, name: c.name, status: c.status,
    counts: `${c.sent_count} sent · ${c.failed_count} failed`,
    progress: progress(c.sent_count + c.failed_count, c.total_recipients), created: c.created_at,
  }));
  return [...t, ...m].sort((a, b) => (a.created < b.created ? 1 : -1));
}

export async function listView(signal, params) {
  setTitle("Campaigns");
  const chosen = {
    kind: params.get("kind") || "", status: params.get("status") || "",
    archived: params.get("archived") === "true",
  };
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
        ${STATUSES.map((s) => `<option>${s}</option>`).join("")}
      </select>
      <label class="check"><input type="checkbox" name="archived" id="filter-archived"> Archived</label>
    </form>
    <p id="list-error" class="error" role="alert" hidden></p>
    <div class="table-wrap"><table class="stack">
      <thead><tr><th scope="col">Name</th><th scope="col">Kind</th><th scope="col">Status</th>
        <th scope="col">Progress</th><th scope="col">Counts</th></tr></thead>
      <tbody id="campaign-rows"><tr><td colspan="5">Loading…</td></tr></tbody>
    </table></div>`);
  const form = document.getElementById("filters");
  form.kind.value = chosen.kind;
  form.status.value = chosen.status;
  form.archived.checked = chosen.archived;
  const refresh = async () => {
    const kind = form.kind.value, status = form.status.value, archived = form.archived.checked;
    try {
      const items = await rows(kind, status, archived);
      if (signal.aborted) return;
      const empty = kind || status || archived
        ? "No campaigns match these filters."
        : "No campaigns yet. Create one from the menu.";
      document.getElementById("campaign-rows").innerHTML = items.length
        ? items.map((c) => `<tr>
            <td data-label="Name"><a href="#/${c.kind === "traffic" ? "traffic" : "messages"}/${c.id}">${esc(c.name)}</a></td>
            <td data-label="Kind">${c.kind}</td><td data-label="Status">${badge(c.status)}</td>
            <td data-label="Progress">${c.progress || "–"}</td><td data-label="Counts">${esc(c.counts)}</td>
          </tr>`).join("")
        : `<tr><td colspan="5">${empty}</td></tr>`;
      document.getElementById("list-error").hidden = true;
    } catch (err) {
      const box = document.getElementById("list-error");
      if (box) { box.textContent = err.message; box.hidden = false; }
    }
  };
  form.addEventListener("change", () => {
    const next = new URLSearchParams();
    if (form.kind.value) next.set("kind", form.kind.value);
    if (form.status.value) next.set("status", form.status.value);
    if (form.archived.checked) next.set("archived", "true");
    const hash = next.toString() ? `#/?${next}` : "#/";
    history.replaceState(null, "", hash);  // a link that reopens this view, no reload
    refresh();
  });
  await refresh();
  const timer = setInterval(refresh, 2000);
  signal.addEventListener("abort", () => clearInterval(timer));
}
