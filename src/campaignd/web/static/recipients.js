// The monitor's "Recipients" tab: the delivery log page by page, filtered and searched,
// retry of the failed ones, and the whole log as a CSV download.
import { api, download } from "./api.js";
import { esc, showError } from "./dom.js";

const STATUSES = [
  ["", "All"], ["sent", "Sent"], ["failed", "Failed"], ["in_doubt", "In doubt"], ["retrying", "Retrying"],
];
const PAGE = 50;

export function recipientsPanel(box, id, onChange) {
  box.innerHTML = `
    <div class="filters" role="search">
      <label for="r-status">Status</label>
      <select id="r-status">${STATUSES.map(([v, l]) => `<option value="${v}">${l}</option>`).join("")}</select>
      <label for="r-search">Search recipients</label>
      <input id="r-search" type="search" placeholder="address or external id" style="width: 16rem">
      <button type="button" id="r-refresh">Refresh</button>
      <button type="button" id="r-csv">Download CSV</button>
      <button type="button" id="r-retry">Retry failed</button>
    </div>
    <p id="r-note" class="hint" role="status" aria-live="polite"></p>
    <p id="r-error" class="error" role="alert" hidden></p>
    <div class="table-wrap"><table>
      <caption class="hint" id="r-caption"></caption>
      <thead><tr>${["External id", "Address", "Status", "Variant", "Attempts", "Error", "Updated"]
        .map((h) => `<th scope="col">${h}</th>`).join("")}</tr></thead>
      <tbody id="r-rows"></tbody>
    </table></div>
    <div class="actions">
      <button type="button" id="r-first">First page</button>
      <button type="button" id="r-next">Next page</button>
    </div>`;
  const status = box.querySelector("#r-status");
  const search = box.querySelector("#r-search");
  let cursors = [null]; // the cursor of each page shown so far
  let next = null;

  const query = (extra) => {
    const params = new URLSearchParams({ limit: String(PAGE), ...extra });
    if (status.value) params.set("status", status.value);
    if (search.value.trim()) params.set("q", search.value.trim());
    return `/api/campaigns/${id}/deliveries?${params}`;
  };

  const load = async () => {
    showError("r-error", null);
    const cursor = cursors[cursors.length - 1];
    try {
      const page = await api("GET", query(cursor ? { cursor } : {}));
      next = page.next_cursor;
      box.querySelector("#r-rows").innerHTML = page.items.length
        ? page.items.map((d) => `<tr data-recipient="${esc(d.external_id)}">
            <td>${esc(d.external_id)}</td><td>${esc(d.address)}</td>
            <td><span class="badge badge-${esc(d.status)}">${esc(d.status.replace("_", " "))}</span></td>
            <td>${esc(d.variant ?? "")}</td><td>${esc(d.attempts)}</td><td>${esc(d.error ?? "")}</td>
            <td>${d.updated_at ? esc(new Date(d.updated_at).toLocaleString()) : ""}</td></tr>`).join("")
        : `<tr><td colspan="7" class="hint">No recipients match.</td></tr>`;
      box.querySelector("#r-caption").textContent =
        `Page ${cursors.length}${next ? "" : " (last)"} · ${page.items.length} recipient(s)`;
      box.querySelector("#r-next").disabled = !next;
      box.querySelector("#r-first").disabled = cursors.length === 1;
    } catch (err) {
      showError("r-error", err);
    }
  };
  const restart = () => { cursors = [null]; load(); };
  let typing;
  search.addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(restart, 300); });
  status.addEventListener("change", restart);
  box.querySelector("#r-refresh").addEventListener("click", load);
  box.querySelector("#r-first").addEventListener("click", restart);
  box.querySelector("#r-next").addEventListener("click", () => { if (next) { cursors.push(next); load(); } });
  box.querySelector("#r-csv").addEventListener("click", async () => {
    showError("r-error", null);
    try {
      await download(query({ format: "csv" }), `campaign-${id}-deliveries.csv`);
    } catch (err) { showError("r-error", err); }
  });
  box.querySelector("#r-retry").addEventListener("click", async () => {
    showError("r-error", null);
    try {
      const result = await api("POST", `/api/campaigns/${id}/retry-failed`);
      box.querySelector("#r-note").textContent = result.requeued
        ? `${result.requeued} failed recipient(s) get one more try (campaign ${result.status}).`
        : "No failed recipients to retry.";
      onChange();
      restart();
    } catch (err) { showError("r-error", err); }
  });
  load();
  return { refresh: load };
}
