// Profiles, accounts (secrets write-only) and audiences (CSV upload with its report).
import { api } from "./api.js";
import { esc, formData, number, render, showError } from "./dom.js";
import { bindJourneyEditor, journeyEditorHtml, profileSummary } from "./steps.js";

const CHANNEL_FIELDS = {
  webhook: [["url", "URL", "text"], ["signing_secret", "Signing secret", "password"]],
  log: [["path", "File path", "text"]],
  smtp: [["host", "Host", "text"], ["port", "Port", "number"], ["from", "From address", "text"],
         ["username", "Username", "text"], ["password", "Password", "password"],
         ["security", "Connection security", "select"],
         ["ca_cert", "CA certificate for a private server (PEM, optional)", "textarea"]],
  telegram: [["bot_token", "Bot token", "password"], ["api_base_url", "API base URL", "text"]],
};

// SMTP's "security" choice: its label, and the account flags it stands for.
const SECURITY = {
  none: ["None (plain SMTP)", {}],
  starttls: ["STARTTLS", { starttls: true }],
  tls: ["TLS from the start (port 465)", { use_tls: true }],
  "tls-unchecked": ["TLS without checking the certificate", { use_tls: true, validate_certs: false }],
};

function fieldInput(name, type) {
  const attrs = `id="acc-${name}" name="config.${name}"`;
  if (type === "select") {
    const options = Object.entries(SECURITY)
      .map(([value, [text]]) => `<option value="${value}">${text}</option>`).join("");
    return `<select ${attrs}>${options}</select>`;
  }
  if (type === "textarea") return `<textarea ${attrs} rows="3" spellcheck="false"></textarea>`;
  return `<input ${attrs} type="${type}" autocomplete="off">`;
}

function settings(config) {
  const shown = Object.entries(config).filter(([key]) => key !== "ca_cert")
    .map(([key, value]) => `${key}=${value}`);
  if (config.ca_cert) shown.push("own CA certificate");
  return shown.join(", ");
}

function channelFields(channel) {
  return CHANNEL_FIELDS[channel].map(([name, label, type]) => `
    <label for="acc-${name}">${label}</label>${fieldInput(name, type)}`).join("");
}

export async function setupView() {
  const [profiles, accounts, audiences] = await Promise.all([
    api("GET", "/api/traffic/profiles"), api("GET", "/api/accounts"), api("GET", "/api/audiences"),
  ]);
  render(`
    <h1>Profiles, accounts, audiences</h1>
    <div class="grid">
    <section class="card">
      <h2>Traffic profiles</h2>
      <ul>${profiles.map((p) => `<li>${esc(p.name)}: ${esc(profileSummary(p))}</li>`).join("")}</ul>
      <form id="profile-form" class="form">
        <label for="p-name">Profile name</label><input id="p-name" name="name" required>
        <label for="p-method">Method</label>
        <select id="p-method" name="method"><option>GET</option><option>POST</option><option>PUT</option><option>DELETE</option></select>
        <label for="p-path">Path</label><input id="p-path" name="path" required value="/">
        <label for="p-think">Think time (ms)</label><input id="p-think" name="think_time_ms" type="number" min="0" value="0">
        <button type="submit">Create profile</button>
        <p id="profile-error" class="error" role="alert" hidden></p>
      </form>
    </section>
    ${journeyEditorHtml()}
    <section class="card">
      <h2>Accounts</h2>
      <ul id="account-list">${accounts.map((a) => `<li>${esc(a.name)} (${esc(a.channel)}): ${esc(settings(a.config))}</li>`).join("")}</ul>
      <form id="account-form" class="form">
        <label for="acc-name">Account name</label><input id="acc-name" name="name" required>
        <label for="acc-channel">Channel</label>
        <select id="acc-channel" name="channel">
          ${Object.keys(CHANNEL_FIELDS).map((c) => `<option>${c}</option>`).join("")}
        </select>
        <div id="acc-fields">${channelFields("webhook")}</div>
        <label for="acc-rate">Rate (messages per minute, empty for no limit)</label>
        <input id="acc-rate" name="rate_per_minute" type="number" min="0.001" step="any">
        <button type="submit">Create account</button>
        <p id="account-error" class="error" role="alert" hidden></p>
      </form>
    </section>
    <section class="card">
      <h2>Audiences</h2>
      <ul>${audiences.map((a) => `<li>${esc(a.name)}: ${a.contact_count} contacts (id ${a.id})</li>`).join("")}</ul>
      <form id="audience-form" class="form">
        <label for="aud-name">Audience name</label><input id="aud-name" name="name" required>
        <label for="aud-file">Contacts CSV (external_id,address,…)</label>
        <input id="aud-file" name="file" type="file" accept=".csv,text/csv">
        <button type="submit">Create audience</button>
        <p id="audience-error" class="error" role="alert" hidden></p>
        <pre id="import-report" aria-live="polite"></pre>
      </form>
    </section>
    </div>`);

  bindJourneyEditor(setupView);
  document.getElementById("acc-channel").addEventListener("change", (event) => {
    document.getElementById("acc-fields").innerHTML = channelFields(event.target.value);
  });
  document.getElementById("profile-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = formData(event.target);
    try {
      await api("POST", "/api/traffic/profiles", {
        name: data.name, think_time_ms: number(data.think_time_ms) || 0,
        requests: [{ method: data.method, path: data.path, weight: 1 }],
      });
      await setupView();
    } catch (err) { showError("profile-error", err); }
  });
  document.getElementById("account-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = formData(event.target);
    const config = {};
    for (const [key, value] of Object.entries(data)) {
      if (key.startsWith("config.") && value !== "") {
        const name = key.slice(7);
        if (name === "security") Object.assign(config, SECURITY[value][1]);
        else config[name] = name === "port" ? Number(value) : value;
      }
    }
    try {
      await api("POST", "/api/accounts", {
        name: data.name, channel: data.channel, config,
        rate_per_minute: number(data.rate_per_minute) ?? null,
      });
      await setupView();
    } catch (err) { showError("account-error", err); }
  });
  document.getElementById("audience-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    try {
      const audience = await api("POST", "/api/audiences", { name: form.name.value });
      const file = form.file.files[0];
      let report = null;
      if (file) {
        report = await api("POST", `/api/audiences/${audience.id}/contacts`, await file.text(), { contentType: "text/csv" });
      }
      await setupView();
      if (report) {
        document.getElementById("import-report").textContent =
          `Imported ${report.imported}, duplicates ${report.duplicates}, rejected ${report.rejected.length}` +
          report.rejected.map((r) => `\nrow ${r.index}: ${r.reason}`).join("");
      }
    } catch (err) { showError("audience-error", err); }
  });
}
