// Profiles (several weighted requests with headers and bodies), accounts (described in words;
// secrets write-only) and audiences (created only when their CSV imports); each can be
// edited (profiles), archived or deleted, refused with the API's reason while in use.
import { api } from "./api.js";
import {
  confirmAction, esc, formData, number, render, setTitle, showError, showFieldErrors, whilePending,
} from "./dom.js";
import { rowList } from "./rows.js";
import { bindJourneyEditor, journeyEditorHtml } from "./steps.js";
import { CHANNEL_NAMES, accountWords, profileWords } from "./words.js";

const CHANNEL_FIELDS = {
  webhook: [["url", "URL", "text"], ["signing_secret", "Signing secret", "password"]],
  log: [["path", "File path", "text"]],
  smtp: [["host", "Host", "text"], ["port", "Port (empty: 587 with STARTTLS, 465 with TLS, else 25)", "number"],
         ["from", "From address", "text"],
         ["username", "Username", "text"], ["password", "Password", "password"],
         ["security", "Connection security", "select"],
         ["ca_cert", "CA certificate for a private server (PEM, optional)", "textarea"]],
  telegram: [["bot_token", "Bot token", "password"], ["api_base_url", "API base URL (optional)", "text"]],
};

// SMTP's "security" choice: its label, and the account flags it stands for.
const SECURITY = {
  starttls: ["STARTTLS", { starttls: true }],
  tls: ["TLS from the start (port 465)", { use_tls: true }],
  none: ["None (plain SMTP)", {}],
  "tls-unchecked": ["TLS without checking the certificate", { use_tls: true, validate_certs: false }],
};

const METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"].map((m) => [m, m]);

function fieldInput(name, type) {
  const attrs = `id="acc-${name}" name="config.${name}" data-field="config.${name}"`;
  if (type === "select") {
    const options = Object.entries(SECURITY)
      .map(([value, [text]]) => `<option value="${value}">${text}</option>`).join("");
    return `<select ${attrs}>${options}</select>`;
  }
  if (type === "textarea") return `<textarea ${attrs} rows="3" spellcheck="false"></textarea>`;
  return `<input ${attrs} type="${type}" autocomplete="off">`;
}

function channelFields(channel) {
  return CHANNEL_FIELDS[channel].map(([name, label, type]) => `
    <label for="acc-${name}">${label}</label>${fieldInput(name, type)}`).join("");
}

function headerText(headers) {
  return Object.entries(headers || {}).map(([k, v]) => `${k}: ${v}`).join("\n");
}

function parseHeaders(text) {
  const headers = {};
  for (const line of text.split("\n").map((l) => l.trim()).filter(Boolean)) {
    const at = line.indexOf(":");
    if (at <= 0) throw new Error(`"${line}" is not a header: write Name: value.`);
    headers[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return Object.keys(headers).length ? headers : null;
}

function parseBody(text) {
  if (!text.trim()) return null;
  try {
    return JSON.parse(text);
  } catch (err) {
    return text;
  }
}

const bodyText = (body) => (body === null || body === undefined ? "" : typeof body === "string" ? body : JSON.stringify(body));

function itemButtons(kind, id, archived) {
  return `<span class="item-actions">
    ${kind === "profile" && !archived ? `<button type="button" class="secondary small" data-edit="${id}">Edit</button>` : ""}
    <button type="button" class="secondary small" data-${archived ? "unarchive" : "archive"}="${kind}:${id}">${archived ? "Unarchive" : "Archive"}</button>
    <button type="button" class="danger small" data-delete="${kind}:${id}">Delete</button></span>`;
}

const ROUTES = { profile: "/api/traffic/profiles", account: "/api/accounts", audience: "/api/audiences" };

export async function setupView({ archived = false } = {}) {
  setTitle("Profiles, accounts, audiences");
  const query = archived ? "?archived=true" : "";
  const [profiles, accounts, audiences] = await Promise.all([
    api("GET", `/api/traffic/profiles${query}`), api("GET", `/api/accounts${query}`),
    api("GET", `/api/audiences${query}`),
  ]);
  const none = (what) => `<li class="hint">${archived ? `No archived ${what}.` : `No ${what} yet.`}</li>`;
  render(`
    <h1>Profiles, accounts, audiences</h1>
    <p><label class="check"><input type="checkbox" id="show-archived" ${archived ? "checked" : ""}> Show archived ones</label></p>
    <p id="setup-error" class="error" role="alert" hidden></p>
    <div class="grid">
    <section class="card">
      <h2>Traffic profiles</h2>
      <ul class="items" id="profile-list">${profiles.map((p) => `<li><span><strong>${esc(p.name)}</strong>: ${esc(profileWords(p))}</span>${itemButtons("profile", p.id, archived)}</li>`).join("") || none("profiles")}</ul>
      <form id="profile-form" class="form" novalidate>
        <h3 id="profile-form-title">New profile</h3>
        <label for="p-name">Profile name</label><input id="p-name" name="name" data-field="name" required>
        <div id="p-requests" data-field="requests"></div>
        <label for="p-headers">Headers for every request (one per line: Name: value)</label>
        <textarea id="p-headers" name="headers" data-field="headers" rows="2" spellcheck="false"></textarea>
        <label for="p-think">Think time (ms)</label><input id="p-think" name="think_time_ms" data-field="think_time_ms" type="number" min="0" value="0">
        <div class="actions"><button type="submit" id="profile-save">Create profile</button>
          <button type="button" id="profile-cancel" class="secondary" hidden>Cancel</button></div>
        <p id="profile-error" class="error" role="alert" hidden></p>
      </form>
    </section>
    ${journeyEditorHtml()}
    <section class="card">
      <h2>Accounts</h2>
      <ul class="items" id="account-list">${accounts.map((a) => `<li><span><strong>${esc(a.name)}</strong> – ${esc(CHANNEL_NAMES[a.channel] || a.channel)}: ${esc(accountWords(a))}${a.domain_limits
        ? ` · domain limits ${esc(Object.entries(a.domain_limits).map(([d, r]) => `${d}=${r}/min`).join(", "))}` : ""}</span>${itemButtons("account", a.id, archived)}</li>`).join("") || none("accounts")}</ul>
      <form id="account-form" class="form" novalidate>
        <h3>New account</h3>
        <label for="acc-name">Account name</label><input id="acc-name" name="name" data-field="name" required>
        <label for="acc-channel">Channel</label>
        <select id="acc-channel" name="channel" data-field="channel">
          ${Object.keys(CHANNEL_FIELDS).map((c) => `<option value="${c}">${CHANNEL_NAMES[c]}</option>`).join("")}
        </select>
        <div id="acc-fields" class="form">${channelFields("webhook")}</div>
        <label for="acc-rate">Rate (messages per minute, empty for no limit)</label>
        <input id="acc-rate" name="rate_per_minute" data-field="rate_per_minute" type="number" min="0.001" step="any">
        <label for="acc-domains">Domain limits (per minute, e.g. gmail.com=600, yahoo.com=300)</label>
        <input id="acc-domains" name="domain_limits" data-field="domain_limits" placeholder="gmail.com=600">
        <button type="submit" id="account-save">Create account</button>
        <p id="account-error" class="error" role="alert" hidden></p>
      </form>
    </section>
    <section class="card">
      <h2>Audiences</h2>
      <ul class="items" id="audience-list">${audiences.map((a) => `<li><span><strong>${esc(a.name)}</strong>: ${a.contact_count ? `${a.contact_count} contacts` : "no contacts"}</span>${itemButtons("audience", a.id, archived)}</li>`).join("") || none("audiences")}</ul>
      <form id="audience-form" class="form" novalidate>
        <h3>New audience</h3>
        <label for="aud-name">Audience name</label><input id="aud-name" name="name" data-field="name" required>
        <label for="aud-file">Contacts CSV (external_id,address,…)</label>
        <input id="aud-file" name="file" data-field="contacts" type="file" accept=".csv,text/csv">
        <p class="hint">A header row with <code>external_id</code> and <code>address</code>; other columns become attributes.</p>
        <button type="submit" id="audience-save">Create audience</button>
        <p id="audience-error" class="error" role="alert" hidden></p>
        <pre id="import-report" aria-live="polite"></pre>
      </form>
    </section>
    </div>`);

  bindJourneyEditor(() => setupView({ archived }));
  document.getElementById("show-archived").addEventListener("change", (event) => {
    setupView({ archived: event.target.checked });
  });
  const requests = rowList(document.getElementById("p-requests"), {
    list: "requests", legend: "Request", addLabel: "Add a request", min: 1,
    fields: [
      { key: "method", label: "Method", type: "select", options: METHODS },
      { key: "path", label: "Path", value: "/" },
      { key: "weight", label: "Weight", type: "number", attrs: 'min="0.001" step="any"', value: 1 },
      { key: "headers", label: "Headers (Name: value per line)", type: "textarea" },
      { key: "body", label: "Body (JSON or text)", type: "textarea" },
    ],
  });
  requests.add();
  let editing = null;
  const profileForm = document.getElementById("profile-form");
  const resetProfile = () => {
    editing = null;
    profileForm.reset();
    requests.clear();
    requests.add();
    document.getElementById("profile-form-title").textContent = "New profile";
    document.getElementById("profile-save").textContent = "Create profile";
    document.getElementById("profile-cancel").hidden = true;
  };
  document.getElementById("profile-cancel").addEventListener("click", resetProfile);
  document.querySelectorAll("[data-edit]").forEach((button) => button.addEventListener("click", () => {
    const profile = profiles.find((p) => p.id === Number(button.dataset.edit));
    editing = profile.id;
    profileForm.name.value = profile.name;
    profileForm.headers.value = headerText(profile.headers);
    profileForm.think_time_ms.value = profile.think_time_ms;
    requests.clear();
    for (const r of profile.requests) {
      requests.add({ ...r, headers: headerText(r.headers), body: bodyText(r.body) });
    }
    document.getElementById("profile-form-title").textContent = `Edit profile ${profile.name}`;
    document.getElementById("profile-save").textContent = "Save profile";
    document.getElementById("profile-cancel").hidden = false;
    profileForm.name.focus();
  }));

  profileForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = formData(profileForm);
    let body;
    try {
      body = {
        name: data.name, think_time_ms: number(data.think_time_ms) || 0,
        headers: parseHeaders(data.headers),
        requests: requests.values().map((r) => ({
          method: r.method, path: r.path, weight: number(r.weight) ?? 1,
          headers: parseHeaders(r.headers), body: parseBody(r.body),
        })),
      };
    } catch (err) {
      showFieldErrors(profileForm, { message: err.message, body: { field: "headers" } }, "profile-error");
      return;
    }
    await whilePending(document.getElementById("profile-save"), async () => {
      try {
        if (editing) await api("PATCH", `/api/traffic/profiles/${editing}`, body);
        else await api("POST", "/api/traffic/profiles", body);
        await setupView({ archived });
      } catch (err) { showFieldErrors(profileForm, err, "profile-error"); }
    });
  });

  document.getElementById("acc-channel").addEventListener("change", (event) => {
    document.getElementById("acc-fields").innerHTML = channelFields(event.target.value);
  });
  const accountForm = document.getElementById("account-form");
  accountForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = formData(accountForm);
    const config = {};
    for (const [key, value] of Object.entries(data)) {
      if (key.startsWith("config.") && value !== "") {
        const name = key.slice(7);
        if (name === "security") Object.assign(config, SECURITY[value][1]);
        else config[name] = name === "port" ? Number(value) : value;
      }
    }
    const limits = {};
    for (const pair of (data.domain_limits || "").split(",").map((p) => p.trim()).filter(Boolean)) {
      const [domain, rate] = pair.split("=").map((p) => p.trim());
      limits[domain] = Number(rate);
    }
    await whilePending(document.getElementById("account-save"), async () => {
      try {
        await api("POST", "/api/accounts", {
          name: data.name, channel: data.channel, config,
          rate_per_minute: number(data.rate_per_minute) ?? null,
          domain_limits: Object.keys(limits).length ? limits : null,
        });
        await setupView({ archived });
      } catch (err) { showFieldErrors(accountForm, err, "account-error"); }
    });
  });

  const audienceForm = document.getElementById("audience-form");
  audienceForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    await whilePending(document.getElementById("audience-save"), async () => {
      const file = audienceForm.file.files[0];
      let audience = null;
      try {
        const text = file ? await file.text() : null;
        if (file && (text.includes("\u0000") || !text.trim())) {
          throw Object.assign(new Error("This file is not a CSV text file; the audience was not created."),
            { body: { field: "contacts" } });
        }
        audience = await api("POST", "/api/audiences", { name: audienceForm.name.value });
        let report = null;
        if (file) {
          report = await api("POST", `/api/audiences/${audience.id}/contacts`, text, { contentType: "text/csv" });
          if (!report.imported && report.rejected.length) {
            const first = report.rejected[0];
            throw Object.assign(new Error(
              `No contact could be imported (row ${first.index}: ${first.reason}); the audience was not created.`),
            { body: { field: "contacts" } });
          }
        }
        audience = null;
        await setupView({ archived });
        if (report) {
          document.getElementById("import-report").textContent =
            `Imported ${report.imported}, duplicates ${report.duplicates}, rejected ${report.rejected.length}` +
            report.rejected.slice(0, 20).map((r) => `\nrow ${r.index}: ${r.reason}`).join("");
        }
      } catch (err) {
        // A failed import leaves no empty audience behind to be picked by mistake.
        if (audience) await api("DELETE", `/api/audiences/${audience.id}`).catch(() => null);
        const error = err.body ? err : Object.assign(err, { body: {} });
        if (audience && error.body && !error.body.field) error.body = { ...error.body, field: "contacts" };
        if (audience && !/audience was not created/.test(error.message)) {
          error.message = `${error.message} The audience was not created.`;
          if (error.body.details) delete error.body.details;
        }
        showFieldErrors(audienceForm, error, "audience-error");
      }
    });
  });

  const lifecycle = async (button, action, question) => {
    const [kind, id] = button.dataset[action].split(":");
    if (question && !(await confirmAction(question))) return;
    await whilePending(button, async () => {
      try {
        if (action === "delete") await api("DELETE", `${ROUTES[kind]}/${id}`);
        else await api("POST", `${ROUTES[kind]}/${id}/${action}`);
        await setupView({ archived });
      } catch (err) {
        showError("setup-error", err);
        document.getElementById("setup-error").scrollIntoView({ block: "center" });
      }
    });
  };
  document.querySelectorAll("[data-archive]").forEach((b) => b.addEventListener("click", () => lifecycle(b, "archive")));
  document.querySelectorAll("[data-unarchive]").forEach((b) => b.addEventListener("click", () => lifecycle(b, "unarchive")));
  document.querySelectorAll("[data-delete]").forEach((b) => b.addEventListener("click", () => {
    const name = b.closest("li").querySelector("strong").textContent;
    lifecycle(b, "delete", {
      title: `Delete ${name}?`, confirm: "Delete", cancel: "Keep it",
      text: "This cannot be undone. Archive hides it and keeps it for the campaigns that used it.",
    });
  }));
}
