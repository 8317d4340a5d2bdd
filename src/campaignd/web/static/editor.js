// Creating campaigns: traffic (profiles, target, rate, duration, users) and messages.
import { api } from "./api.js";
import { esc, formData, number, render, showError } from "./dom.js";

export async function newTrafficView() {
  const profiles = await api("GET", "/api/traffic/profiles");
  render(`
    <h1>New traffic campaign</h1>
    <form id="traffic-form" class="card form">
      <label for="t-name">Name</label>
      <input id="t-name" name="name" required maxlength="200">
      <label for="t-target">Target URL</label>
      <input id="t-target" name="target_url" required placeholder="http://127.0.0.1:9000">
      <fieldset><legend>User profiles</legend>
        ${profiles.length ? profiles.map((p) => `
          <label class="check"><input type="checkbox" name="profile" value="${p.id}"> ${esc(p.name)}
          (${p.requests.length} request${p.requests.length === 1 ? "" : "s"})</label>`).join("")
          : `<p>No profiles yet: <a href="#/setup">create one</a>.</p>`}
      </fieldset>
      <label for="t-rpm">Requests per minute</label>
      <input id="t-rpm" name="requests_per_minute" type="number" min="0.001" step="any" required value="600">
      <label for="t-duration">Duration (minutes)</label>
      <input id="t-duration" name="duration_minutes" type="number" min="0.001" step="any" required value="1">
      <label for="t-users">Virtual users</label>
      <input id="t-users" name="total_users" type="number" min="1" step="1" required value="10">
      <button type="submit">Create campaign</button>
      <p id="traffic-error" class="error" role="alert" hidden></p>
    </form>`);
  document.getElementById("traffic-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    const data = formData(form);
    const body = {
      name: data.name,
      target_url: data.target_url,
      user_profile_ids: [...form.querySelectorAll("input[name=profile]:checked")].map((i) => Number(i.value)),
      requests_per_minute: number(data.requests_per_minute),
      duration_minutes: number(data.duration_minutes),
      total_users: number(data.total_users),
    };
    try {
      const created = await api("POST", "/api/traffic/campaigns", body);
      location.hash = `#/traffic/${created.id}`;
    } catch (err) {
      showError("traffic-error", err);
    }
  });
}

export async function newMessageView() {
  const [accounts, audiences] = await Promise.all([
    api("GET", "/api/accounts"), api("GET", "/api/audiences"),
  ]);
  render(`
    <h1>New message campaign</h1>
    <form id="message-form" class="card form">
      <label for="m-name">Name</label>
      <input id="m-name" name="name" required maxlength="200">
      <label for="m-account">Account</label>
      <select id="m-account" name="account_id" required>
        ${accounts.map((a) => `<option value="${a.id}">${esc(a.name)} (${esc(a.channel)})</option>`).join("")}
      </select>
      <label for="m-audience">Audience</label>
      <select id="m-audience" name="audience_id" required>
        ${audiences.map((a) => `<option value="${a.id}">${esc(a.name)} (${a.contact_count} contacts)</option>`).join("")}
      </select>
      <label for="m-message">Message</label>
      <textarea id="m-message" name="message" rows="4" required>Hello {{ external_id }}</textarea>
      <p class="hint">A template: <code>{{ name }}</code> is the contact's attribute "name".</p>
      <section aria-live="polite" class="preview">
        <h2>Preview</h2>
        <p id="m-preview-for"></p>
        <pre id="m-preview"></pre>
      </section>
      <label for="m-limit">Limit</label>
      <input id="m-limit" name="limit" type="number" min="0" step="1" required value="100">
      <label for="m-rate">Rate (messages per minute, empty for no limit)</label>
      <input id="m-rate" name="rate_per_minute" type="number" min="0.001" step="any">
      <label class="check"><input type="checkbox" name="track_links"> Track links
        (rewrite links to count clicks)</label>
      <button type="submit">Create campaign</button>
      <p id="message-error" class="error" role="alert" hidden></p>
    </form>`);
  const form = document.getElementById("message-form");
  let pending;
  const preview = () => {
    clearTimeout(pending);
    pending = setTimeout(async () => {
      try {
        const result = await api("POST", "/api/campaigns/preview", {
          message: form.message.value || " ", audience_id: number(form.audience_id.value),
        });
        document.getElementById("m-preview-for").textContent =
          result.contact ? `For contact ${result.contact.external_id}:` : "";
        document.getElementById("m-preview").textContent = result.error || result.rendered;
      } catch (err) {
        document.getElementById("m-preview").textContent = err.message;
      }
    }, 250);
  };
  form.message.addEventListener("input", preview);
  form.audience_id.addEventListener("change", preview);
  preview();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = formData(form);
    try {
      const created = await api("POST", "/api/campaigns", {
        name: data.name,
        account_id: number(data.account_id),
        audience_id: number(data.audience_id),
        message: data.message,
        limit: number(data.limit),
        rate_per_minute: number(data.rate_per_minute) ?? null,
        track_links: data.track_links === "on",
      });
      location.hash = `#/messages/${created.id}`;
    } catch (err) {
      showError("message-error", err);
    }
  });
}
