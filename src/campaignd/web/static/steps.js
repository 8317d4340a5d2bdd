// Journeys in the UI: the profile editor with steps and data rows (JSON, or a CSV file), and
// the tables per step (like Locust's) and per check that the monitor and report pages show.
import { api } from "./api.js";
import { esc, showError } from "./dom.js";

const METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

function stepFields(n) {
  const id = (name) => `s${n}-${name}`;
  return `
    <fieldset class="step" data-step="${n}">
      <legend>Step ${n + 1}</legend>
      <div class="form">
        <label for="${id("name")}">Step name</label><input id="${id("name")}" name="name" required value="step ${n + 1}">
        <label for="${id("method")}">Step method</label>
        <select id="${id("method")}" name="method">${METHODS.map((m) => `<option>${m}</option>`).join("")}</select>
        <label for="${id("path")}">Step path</label>
        <input id="${id("path")}" name="path" required value="/" spellcheck="false">
        <label for="${id("headers")}">Headers (one per line, <code>Name: value</code>)</label>
        <textarea id="${id("headers")}" name="headers" rows="2" spellcheck="false"></textarea>
        <label for="${id("body")}">Body (JSON or text; templates like <code>{{ data.email }}</code>)</label>
        <textarea id="${id("body")}" name="body" rows="2" spellcheck="false"></textarea>
        <label for="${id("extract")}">Extract (one per line: <code>token = json $.token</code>, <code>id = regex id=(\\d+)</code>, <code>next = header Location</code>)</label>
        <textarea id="${id("extract")}" name="extract" rows="2" spellcheck="false"></textarea>
        <label for="${id("checks")}">Checks (one per line: <code>status 200</code>, <code>json $.ok == true</code>, <code>body_contains welcome</code>)</label>
        <textarea id="${id("checks")}" name="checks" rows="2" spellcheck="false"></textarea>
        <label for="${id("think")}">Think time after the step (ms, or min-max)</label>
        <input id="${id("think")}" name="think" spellcheck="false">
        <button type="button" class="remove-step">Remove step ${n + 1}</button>
      </div>
    </fieldset>`;
}

export function journeyEditorHtml() {
  return `
    <section class="card">
      <h2>Journey profiles (scripted users)</h2>
      <form id="journey-form" class="form">
        <label for="j-name">Journey name</label><input id="j-name" name="name" required>
        <div id="journey-steps">${stepFields(0)}</div>
        <button type="button" id="add-step">Add step</button>
        <label for="j-data">Data rows (JSON list of objects; user i takes row i mod n)</label>
        <textarea id="j-data" name="data" rows="3" spellcheck="false" placeholder='[{"email": "ann@example.com"}]'></textarea>
        <label for="j-data-file">Data rows from a CSV file (header row = column names)</label>
        <input id="j-data-file" type="file" accept=".csv,text/csv">
        <p id="j-data-report" class="hint" aria-live="polite"></p>
        <button type="submit">Create journey</button>
        <p id="journey-error" class="error" role="alert" hidden></p>
      </form>
    </section>`;
}

// RFC 4180: quoted fields may hold commas, quotes ("") and line breaks.
export function parseCsv(text) {
  const rows = [];
  let row = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i += 1; }
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") { row.push(field); field = ""; }
    else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i += 1;
      row.push(field); field = "";
      if (row.some((v) => v !== "")) rows.push(row);
      row = [];
    } else field += c;
  }
  row.push(field);
  if (row.some((v) => v !== "")) rows.push(row);
  if (!rows.length) return [];
  const [header, ...body] = rows;
  return body.map((values) => Object.fromEntries(header.map((name, i) => [name.trim(), values[i] ?? ""])));
}

function lines(text) {
  return text.split("\n").map((l) => l.trim()).filter(Boolean);
}

function parseHeaders(text) {
  const headers = {};
  for (const line of lines(text)) {
    const at = line.indexOf(":");
    if (at < 1) throw new Error(`Header line "${line}" needs "Name: value".`);
    headers[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return headers;
}

function parseExtract(text) {
  const extract = {};
  for (const line of lines(text)) {
    const m = line.match(/^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(json|regex|header)\s+(.+)$/);
    if (!m) throw new Error(`Extract line "${line}" needs "variable = json|regex|header expression".`);
    extract[m[1]] = { [m[2]]: m[3] };
  }
  return extract;
}

function literal(text) {
  try { return JSON.parse(text); } catch (err) { return text; }
}

function parseChecks(text) {
  return lines(text).map((line) => {
    let m = line.match(/^status\s+(\d{3})$/);
    if (m) return { status: Number(m[1]) };
    m = line.match(/^json\s+(\S+)\s*==\s*(.+)$/);
    if (m) return { json: m[1], equals: literal(m[2].trim()) };
    m = line.match(/^json\s+(\S+)$/);
    if (m) return { json: m[1] };
    m = line.match(/^body_contains\s+(.+)$/);
    if (m) return { body_contains: m[1] };
    throw new Error(`Check line "${line}" needs "status 200", "json $.path == value" or "body_contains text".`);
  });
}

function parseThink(text) {
  const t = text.trim();
  if (!t) return undefined;
  const m = t.match(/^(\d+)\s*-\s*(\d+)$/);
  return m ? [Number(m[1]), Number(m[2])] : Number(t);
}

function readStep(fieldset) {
  const value = (name) => fieldset.querySelector(`[name="${name}"]`).value;
  const step = { name: value("name"), method: value("method"), path: value("path") };
  const headers = parseHeaders(value("headers"));
  if (Object.keys(headers).length) step.headers = headers;
  if (value("body").trim()) step.body = literal(value("body").trim());
  const extract = parseExtract(value("extract"));
  if (Object.keys(extract).length) step.extract = extract;
  const checks = parseChecks(value("checks"));
  if (checks.length) step.checks = checks;
  const think = parseThink(value("think"));
  if (think !== undefined) step.think_time_ms = think;
  return step;
}

export function bindJourneyEditor(onSaved) {
  const box = document.getElementById("journey-steps");
  const renumber = () => {
    const values = [...box.querySelectorAll("fieldset.step")].map(readRaw);
    box.innerHTML = values.map((_, n) => stepFields(n)).join("");
    values.forEach((v, n) => writeRaw(box.querySelectorAll("fieldset.step")[n], v));
  };
  document.getElementById("add-step").addEventListener("click", () => {
    box.insertAdjacentHTML("beforeend", stepFields(box.querySelectorAll("fieldset.step").length));
  });
  box.addEventListener("click", (event) => {
    if (!event.target.classList.contains("remove-step")) return;
    if (box.querySelectorAll("fieldset.step").length === 1) return;
    event.target.closest("fieldset").remove();
    renumber();
  });
  document.getElementById("j-data-file").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    if (!file) return;
    const rows = parseCsv(await file.text());
    document.getElementById("j-data").value = JSON.stringify(rows, null, 1);
    document.getElementById("j-data-report").textContent =
      `${rows.length} data rows from ${file.name}` + (rows.length ? ` (columns: ${Object.keys(rows[0]).join(", ")})` : "");
  });
  document.getElementById("journey-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    showError("journey-error", null);
    try {
      const body = {
        name: document.getElementById("j-name").value,
        steps: [...box.querySelectorAll("fieldset.step")].map(readStep),
      };
      const data = document.getElementById("j-data").value.trim();
      if (data) {
        try { body.data = JSON.parse(data); } catch (err) { throw new Error("Data rows must be a JSON list of objects."); }
      }
      await api("POST", "/api/traffic/profiles", body);
      await onSaved();
    } catch (err) {
      showError("journey-error", err);
    }
  });
}

function readRaw(fieldset) {
  return Object.fromEntries([...fieldset.querySelectorAll("[name]")].map((el) => [el.name, el.value]));
}

function writeRaw(fieldset, values) {
  for (const [name, value] of Object.entries(values)) fieldset.querySelector(`[name="${name}"]`).value = value;
}

// A journey profile in words: its steps in order and its data rows.
export function journeyWords(p) {
  const rows = p.data ? `, ${p.data.length} data rows` : "";
  return `journey: ${p.steps.map((s) => `${s.name} (${s.method || "GET"} ${s.path})`).join(" → ")}${rows}`;
}

// The checks' passes and fails and the iterations, under the table per request name (or step)
// that the monitor and report pages draw.
export function checkTables(stats) {
  if (!stats) return "";
  const checks = (stats.checks || []).map((c) => {
    const total = c.passes + c.fails;
    const rate = total ? `${((100 * c.passes) / total).toFixed(2)}%` : "–";
    return `<tr class="${c.fails ? "check-failing" : ""}"><td data-label="Step">${esc(c.step)}</td>
      <td data-label="Check">${esc(c.name)}</td><td data-label="Passes">${esc(c.passes)}</td>
      <td data-label="Fails">${esc(c.fails)}</td><td data-label="Pass rate">${rate}</td></tr>`;
  }).join("");
  const iterations = stats.iterations || stats.iterations_aborted
    ? `<p id="iterations">Iterations: ${esc(stats.iterations)} completed, ${esc(stats.iterations_aborted)} aborted (a failed extraction).</p>` : "";
  if (!checks) return iterations;
  return `<h2>Checks</h2>
    <div class="table-wrap"><table class="stack" id="check-table">
      <thead><tr><th scope="col">Step</th><th scope="col">Check</th><th scope="col">Passes</th>
        <th scope="col">Fails</th><th scope="col">Pass rate</th></tr></thead>
      <tbody>${checks}</tbody>
    </table></div>
    ${iterations}`;
}
