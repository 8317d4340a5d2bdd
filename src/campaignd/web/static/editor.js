// Creating and editing campaigns: traffic (profiles, target, rate, duration, users, ramp)
// and messages (account, audience, message with preview, subject, limits, schedule,
// segment, A/B variants). A draft can change every field; errors appear beside the field.
import { api } from "./api.js";
import {
  esc, number, render, setTitle, showError, showFieldErrors, whilePending,
} from "./dom.js";
import { rowList } from "./rows.js";
import { sendTest, testSendFields } from "./testsend.js";
import { CHANNEL_NAMES, accountWords, profileWords } from "./words.js";

const EDITABLE = ["draft", "scheduled"];

function notEditable(kind, campaign) {
  const where = kind === "traffic" ? "traffic" : "messages";
  render(`<h1>${esc(campaign.name)}</h1>
    <p>This campaign is ${esc(campaign.status)}: only a draft can change every field. Use Edit on
    <a href="#/${where}/${campaign.id}">its page</a> for what can change now, or clone it.</p>`);
}

// traffic ------------------------------------------------------------------------------
async function trafficForm(campaign) {
  const profiles = await api("GET", "/api/traffic/profiles");
  const chosen = new Set(campaign?.user_profile_ids || []);
  const missing = campaign ? campaign.user_profile_ids.filter((id) => !profiles.some((p) => p.id === id)) : [];
  const editing = Boolean(campaign);
  const title = editing ? `Edit ${campaign.name}` : "New traffic campaign";
  setTitle(title);
  const c = campaign || { requests_per_minute: 600, duration_minutes: 1, total_users: 10, request_timeout_seconds: 30 };
  render(`
    ${editing ? `<p><a href="#/traffic/${c.id}">← Back to the campaign</a></p>` : ""}
    <h1>${esc(title)}</h1>
    <form id="traffic-form" class="card form" novalidate>
      <label for="t-name">Name</label>
      <input id="t-name" name="name" data-field="name" required maxlength="200" value="${esc(c.name)}">
      <label for="t-target">Target URL</label>
      <input id="t-target" name="target_url" data-field="target_url" required
             placeholder="http://127.0.0.1:9000" value="${esc(c.target_url)}">
      <p class="hint">A service you own; only addresses the service allows (loopback by default).</p>
      <fieldset data-field="user_profile_ids"><legend>User profiles</legend>
        ${profiles.length ? profiles.map((p) => `
          <label class="check"><input type="checkbox" name="profile" value="${p.id}" ${chosen.has(p.id) ? "checked" : ""}>
          <span><strong>${esc(p.name)}</strong> <span class="hint">${esc(profileWords(p))}</span></span></label>`).join("")
          : `<p>No profiles yet: <a href="#/setup">create one</a>.</p>`}
        ${missing.map((id) => `<input type="hidden" name="profile-kept" value="${id}">`).join("")}
      </fieldset>
      <label for="t-rpm">Requests per minute</label>
      <input id="t-rpm" name="requests_per_minute" data-field="requests_per_minute" type="number" min="0.001" step="any" required value="${esc(c.requests_per_minute)}">
      <label for="t-duration">Duration (minutes)</label>
      <input id="t-duration" name="duration_minutes" data-field="duration_minutes" type="number" min="0.001" step="any" required value="${esc(c.duration_minutes)}">
      <label for="t-users">Virtual users</label>
      <input id="t-users" name="total_users" data-field="total_users" type="number" min="1" step="1" required value="${esc(c.total_users)}">
      <label for="t-timeout">Request timeout (seconds)</label>
      <input id="t-timeout" name="request_timeout_seconds" data-field="request_timeout_seconds" type="number" min="0.001" step="any" value="${esc(c.request_timeout_seconds)}">
      <details ${c.stages?.length ? "open" : ""}><summary>Ramp the rate in stages (optional)</summary>
        <p class="hint">Each stage moves the rate evenly to its target; the duration becomes their sum.</p>
        <div id="t-stages" data-field="stages"></div>
      </details>
      <button type="submit" id="traffic-save">${editing ? "Save" : "Create campaign"}</button>
      <p id="traffic-error" class="error" role="alert" hidden></p>
    </form>`);
  const stages = rowList(document.getElementById("t-stages"), {
    list: "stages", legend: "Stage", addLabel: "Add a stage",
    fields: [
      { key: "duration_minutes", label: "Minutes", type: "number", attrs: 'min="0.001" step="any"' },
      { key: "target_rpm", label: "Target requests per minute", type: "number", attrs: 'min="0" step="any"' },
    ],
  });
  (c.stages || []).forEach((s) => stages.add(s));
  const form = document.getElementById("traffic-form");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const ramp = stages.values().filter((s) => s.duration_minutes !== "" || s.target_rpm !== "")
      .map((s) => ({ duration_minutes: number(s.duration_minutes), target_rpm: number(s.target_rpm) }));
    const body = {
      name: form.name.value,
      target_url: form.target_url.value,
      user_profile_ids: [
        ...[...form.querySelectorAll("input[name=profile]:checked")].map((i) => Number(i.value)),
        ...[...form.querySelectorAll("input[name=profile-kept]")].map((i) => Number(i.value)),
      ],
      requests_per_minute: number(form.requests_per_minute.value),
      duration_minutes: number(form.duration_minutes.value),
      total_users: number(form.total_users.value),
      request_timeout_seconds: number(form.request_timeout_seconds.value),
    };
    if (ramp.length) body.stages = ramp;
    else if (editing && c.stages?.length) body.stages = null;
    await whilePending(document.getElementById("traffic-save"), async () => {
      try {
        const saved = editing
          ? await api("PATCH", `/api/traffic/campaigns/${c.id}`, body)
          : await api("POST", "/api/traffic/campaigns", body);
        location.hash = `#/traffic/${saved.id}`;
      } catch (err) {
        showFieldErrors(form, err, "traffic-error");
      }
    });
  });
}

export const newTrafficView = () => trafficForm(null);

export async function editTrafficView(id) {
  const campaign = await api("GET", `/api/traffic/campaigns/${id}`);
  if (campaign.status !== "draft") return notEditable("traffic", campaign);
  return trafficForm(campaign);
}

// messages -----------------------------------------------------------------------------
const OPERATORS = [["equals", "is"], ["not_equals", "is not"], ["in", "is one of"], ["exists", "is set"]];
const METRICS = [["delivery_rate", "delivery rate"], ["click_rate", "click rate"],
  ["conversion_rate", "conversion rate"], ["unsubscribe_rate", "fewest unsubscribes"]];

function segmentRows(segment) {
  const conditions = Array.isArray(segment) ? segment : segment?.all || [];
  return conditions.map((c) => {
    const op = OPERATORS.map(([o]) => o).find((o) => o in c) || "equals";
    const value = op === "in" ? (c.in || []).join(", ") : op === "exists" ? "" : c[op] ?? "";
    return { attribute: c.attribute, op, value };
  });
}

function segmentFrom(rows) {
  const conditions = rows.filter((r) => r.attribute.trim()).map((r) => {
    const attribute = r.attribute.trim();
    if (r.op === "in") return { attribute, in: r.value.split(",").map((v) => v.trim()).filter(Boolean) };
    if (r.op === "exists") return { attribute, exists: true };
    return { attribute, [r.op]: r.value };
  });
  return conditions.length ? conditions : null;
}

// <input type=datetime-local> speaks local time without a zone; the API speaks UTC.
function localInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function audienceOption(a, selected) {
  const words = a.contact_count ? `${a.contact_count} contacts` : "no contacts";
  return `<option value="${a.id}" data-count="${a.contact_count}" ${selected ? "selected" : ""}>${esc(a.name)} (${words})</option>`;
}

async function messageForm(campaign) {
  const [accounts, audiences] = await Promise.all([api("GET", "/api/accounts"), api("GET", "/api/audiences")]);
  const editing = Boolean(campaign);
  const title = editing ? `Edit ${campaign.name}` : "New message campaign";
  setTitle(title);
  const c = campaign || { message: "Hello {{ external_id }}", limit: 100 };
  // An empty audience is never the default choice.
  const audienceId = c.audience_id ?? (audiences.find((a) => a.contact_count > 0) || audiences[0])?.id;
  const tz = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  render(`
    ${editing ? `<p><a href="#/messages/${c.id}">← Back to the campaign</a></p>` : ""}
    <h1>${esc(title)}</h1>
    <form id="message-form" class="card form" novalidate>
      <label for="m-name">Name</label>
      <input id="m-name" name="name" data-field="name" required maxlength="200" value="${esc(c.name)}">
      <label for="m-account">Account</label>
      <select id="m-account" name="account_id" data-field="account_id" required>
        ${accounts.map((a) => `<option value="${a.id}" data-channel="${esc(a.channel)}" ${a.id === c.account_id ? "selected" : ""}>${esc(a.name)} – ${esc(CHANNEL_NAMES[a.channel] || a.channel)}</option>`).join("")}
      </select>
      <p class="hint" id="m-account-words"></p>
      ${accounts.length ? "" : `<p class="warning">No accounts yet: <a href="#/setup">create one</a> first.</p>`}
      <label for="m-audience">Audience</label>
      <select id="m-audience" name="audience_id" data-field="audience_id" required>
        ${audiences.map((a) => audienceOption(a, a.id === audienceId)).join("")}
      </select>
      <p class="warning" id="m-audience-warning" role="status" hidden>This audience has no contacts:
        the campaign would send nothing. <a href="#/setup">Import contacts</a> first.</p>
      <div id="m-subject-box" hidden>
        <label for="m-subject">Subject</label>
        <input id="m-subject" name="subject" data-field="subject" maxlength="1000" value="${esc(c.subject)}">
      </div>
      <label for="m-message">Message</label>
      <textarea id="m-message" name="message" data-field="message" rows="4" required>${esc(c.message)}</textarea>
      <p class="hint">A template: <code>{{ name }}</code> is the contact's attribute "name";
        <code>{{ unsubscribe_url }}</code> a link that unsubscribes them.</p>
      <section aria-live="polite" class="preview">
        <h2>Preview</h2>
        <p id="m-preview-for"></p>
        <pre id="m-preview"></pre>
      </section>
      ${editing ? testSendFields() : ""}
      <label for="m-limit">Limit</label>
      <input id="m-limit" name="limit" data-field="limit" type="number" min="0" step="1" required value="${esc(c.limit)}" aria-describedby="m-limit-hint">
      <p class="hint" id="m-limit-hint">At most this many recipients get the message.</p>
      <label for="m-rate">Rate (messages per minute, empty for no limit)</label>
      <input id="m-rate" name="rate_per_minute" data-field="rate_per_minute" type="number" min="0.001" step="any" value="${esc(c.rate_per_minute)}">
      <label for="m-failures">Pause after this many failures in a row (empty: the service's default, 50; 0: never)</label>
      <input id="m-failures" name="max_consecutive_failures" data-field="max_consecutive_failures" type="number" min="0" step="1" value="${esc(c.max_consecutive_failures)}">
      <label class="check"><input type="checkbox" name="track_links" ${c.track_links ? "checked" : ""}> Track links
        (rewrite links to count clicks)</label>
      <details ${c.start_at || c.send_window ? "open" : ""}><summary>Schedule</summary>
        <label for="m-start">Start by itself at (your local time; empty to start by hand)</label>
        <input id="m-start" name="start_at" data-field="start_at" type="datetime-local" value="${esc(localInput(c.start_at))}">
        <fieldset data-field="send_window"><legend>Send only between (optional)</legend>
          <div class="inline">
            <label for="m-window-start">From</label><input id="m-window-start" name="window_start" type="time" value="${esc(c.send_window?.start)}">
            <label for="m-window-end">to</label><input id="m-window-end" name="window_end" type="time" value="${esc(c.send_window?.end)}">
          </div>
          <label for="m-window-tz">Time zone</label>
          <input id="m-window-tz" name="window_tz" value="${esc(c.send_window?.timezone || tz)}">
        </fieldset>
      </details>
      <details ${c.segment ? "open" : ""}><summary>Segment (who in the audience gets it)</summary>
        <p class="hint">Every condition must hold. Values compare with the contact's attributes.</p>
        <div id="m-segment" data-field="segment"></div>
        <p id="m-segment-count" class="hint" aria-live="polite"></p>
      </details>
      <details ${c.variants ? "open" : ""}><summary>A/B variants</summary>
        <p class="hint">Each recipient gets one variant, by weight; an empty message uses the main one.</p>
        <div id="m-variants" data-field="variants"></div>
        <label class="check"><input type="checkbox" id="m-ab" name="ab" ${c.ab_test ? "checked" : ""}> Test the variants on a sample first, then send the winner to everyone else</label>
        <div id="m-ab-box" data-field="ab_test">
          <label for="m-ab-sample">Sample (% of the audience)</label>
          <input id="m-ab-sample" name="sample_percent" data-field="ab_test.sample_percent" type="number" min="0.1" max="99" step="any" value="${esc(c.ab_test?.sample_percent ?? 20)}">
          <label for="m-ab-metric">Winner by</label>
          <select id="m-ab-metric" name="metric" data-field="ab_test.metric">${METRICS.map(([v, t]) => `<option value="${v}" ${c.ab_test?.metric === v ? "selected" : ""}>${t}</option>`).join("")}</select>
          <label for="m-ab-wait">Wait for results (minutes)</label>
          <input id="m-ab-wait" name="wait_minutes" data-field="ab_test.wait_minutes" type="number" min="0" step="any" value="${esc(c.ab_test?.wait_minutes ?? 60)}">
        </div>
      </details>
      <button type="submit" id="message-save">${editing ? "Save" : "Create campaign"}</button>
      <p id="message-error" class="error" role="alert" hidden></p>
    </form>`);
  const form = document.getElementById("message-form");
  const segment = rowList(document.getElementById("m-segment"), {
    list: "segment", legend: "Condition", addLabel: "Add a condition",
    fields: [
      { key: "attribute", label: "Attribute", placeholder: "tier" },
      { key: "op", label: "Test", type: "select", options: OPERATORS },
      { key: "value", label: "Value (several: separated by commas)", placeholder: "gold" },
    ],
  });
  segmentRows(c.segment).forEach((r) => segment.add(r));
  const variants = rowList(document.getElementById("m-variants"), {
    list: "variants", legend: "Variant", addLabel: "Add a variant",
    fields: [
      { key: "name", label: "Name", placeholder: "A" },
      { key: "message", label: "Message (empty: the main message)", type: "textarea" },
      { key: "weight", label: "Weight", type: "number", attrs: 'min="0.001" step="any"', value: 1 },
    ],
  });
  (c.variants || []).forEach((v) => variants.add({ ...v, message: v.message || "" }));

  const sync = () => {
    const account = accounts.find((a) => String(a.id) === form.account_id.value);
    document.getElementById("m-account-words").textContent = account ? accountWords(account) : "";
    document.getElementById("m-subject-box").hidden = account?.channel !== "smtp";
    const option = form.audience_id.selectedOptions[0];
    document.getElementById("m-audience-warning").hidden = !option || Number(option.dataset.count) > 0;
    document.getElementById("m-ab-box").hidden = !form.ab.checked;
  };
  sync();
  form.account_id.addEventListener("change", sync);
  form.ab.addEventListener("change", sync);

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
        document.getElementById("m-preview").textContent =
          result.error ? result.error.replace(/^Field 'message' /, "The message ") : result.rendered;
      } catch (err) {
        document.getElementById("m-preview").textContent = err.message;
      }
    }, 250);
  };
  let counting;
  const countSegment = () => {
    clearTimeout(counting);
    counting = setTimeout(async () => {
      const box = document.getElementById("m-segment-count");
      const conditions = segmentFrom(segment.values());
      if (!conditions || !form.audience_id.value) { box.textContent = ""; return; }
      try {
        const r = await api("POST", `/api/audiences/${form.audience_id.value}/segment-preview`, { segment: conditions });
        box.textContent = `Matches ${r.matching} of ${r.total} contacts.`;
      } catch (err) {
        box.textContent = err.message.replace(/Field '[^']+' /, "This condition ");
      }
    }, 300);
  };
  form.message.addEventListener("input", preview);
  if (editing) {
    document.getElementById("send-test").addEventListener("click", async (event) => {
      const note = document.getElementById("test-result");
      showError("message-error", null);
      note.textContent = "Sending…";
      await whilePending(event.target, async () => {
        try {
          note.textContent = await sendTest(c.id, form);
        } catch (err) {
          note.textContent = "";
          showError("message-error", err);
        }
      });
    });
  }
  form.audience_id.addEventListener("change", () => { sync(); preview(); countSegment(); });
  document.getElementById("m-segment").addEventListener("input", countSegment);
  document.getElementById("m-segment").addEventListener("change", countSegment);
  preview();
  countSegment();

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const chosenVariants = variants.values().filter((v) => v.name.trim() || v.message.trim())
      .map((v) => ({ name: v.name, message: v.message.trim() ? v.message : null, weight: number(v.weight) ?? 1 }));
    const start = form.start_at.value ? new Date(form.start_at.value).toISOString() : null;
    const windowGiven = form.window_start.value || form.window_end.value;
    const body = {
      name: form.name.value,
      account_id: number(form.account_id.value),
      audience_id: number(form.audience_id.value),
      message: form.message.value,
      subject: document.getElementById("m-subject-box").hidden ? null : form.subject.value || null,
      limit: number(form.limit.value),
      rate_per_minute: number(form.rate_per_minute.value) ?? null,
      max_consecutive_failures: number(form.max_consecutive_failures.value) ?? null,
      track_links: form.track_links.checked,
      start_at: start,
      send_window: windowGiven
        ? { start: form.window_start.value, end: form.window_end.value, timezone: form.window_tz.value || "UTC" }
        : null,
      segment: segmentFrom(segment.values()),
      variants: chosenVariants.length ? chosenVariants : null,
      ab_test: form.ab.checked ? {
        sample_percent: number(form.sample_percent.value), metric: form.metric.value,
        wait_minutes: number(form.wait_minutes.value) ?? 0,
      } : null,
    };
    await whilePending(document.getElementById("message-save"), async () => {
      try {
        const saved = editing
          ? await api("PATCH", `/api/campaigns/${c.id}`, body)
          : await api("POST", "/api/campaigns", body);
        location.hash = `#/messages/${saved.id}`;
      } catch (err) {
        showFieldErrors(form, err, "message-error");
      }
    });
  });
}

export const newMessageView = () => messageForm(null);

export async function editMessageView(id) {
  const campaign = await api("GET", `/api/campaigns/${id}`);
  if (!EDITABLE.includes(campaign.status)) return notEditable("messages", campaign);
  return messageForm(campaign);
}

export { showError };
