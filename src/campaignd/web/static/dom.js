// Small DOM helpers: every value from the API goes through esc() before it reaches HTML.
export function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
  })[c]);
}

export function view() {
  return document.getElementById("view");
}

export function render(html) {
  const root = view();
  root.innerHTML = html;
  markWideTables(root);
  return root;
}

export function setTitle(text) {
  document.title = text ? `${text} – campaignd` : "campaignd";
}

export function badge(status) {
  return `<span class="badge badge-${esc(status)}">${esc(status)}</span>`;
}

// The API says "Field 'message' is not a valid template"; a form says "Message is not ...".
function inWords(message, labelFor) {
  return String(message).replace(/Field '([^']+)'/g, (all, field) => labelFor(field) || "This field");
}

export function showError(target, err) {
  const box = typeof target === "string" ? document.getElementById(target) : target;
  if (!box) return;
  box.textContent = err ? inWords(err.message, () => null) : "";
  box.hidden = !err;
}

function labelText(control) {
  const label = control.id && document.querySelector(`label[for="${control.id}"]`);
  const legend = control.closest("fieldset")?.querySelector("legend");
  const text = label ? label.textContent : legend ? legend.textContent : "";
  return text.replace(/\s*\(.*\)\s*$/, "").trim();
}

// The control that shows an API field: exact data-field, else the closest parent field.
function controlFor(form, field) {
  let name = String(field || "").replace(/\[(\d+)\]/g, ".$1");
  while (name) {
    const found = form.querySelector(`[data-field="${CSS.escape(name)}"]`);
    if (found) return found;
    name = name.includes(".") ? name.slice(0, name.lastIndexOf(".")) : "";
  }
  return null;
}

export function clearFieldErrors(form) {
  form.querySelectorAll(".field-error").forEach((node) => node.remove());
  form.querySelectorAll("[aria-invalid]").forEach((node) => node.removeAttribute("aria-invalid"));
}

// Each problem the API names goes next to its field, in words; the rest to the form's box.
export function showFieldErrors(form, err, fallbackBox) {
  clearFieldErrors(form);
  showError(fallbackBox, null);
  if (!err) return;
  const body = err.body || {};
  const problems = body.details?.length
    ? body.details.map((d) => ({ field: d.field, message: d.message }))
    : [{ field: body.field, message: err.message }];
  const labelFor = (field) => {
    const control = controlFor(form, field);
    return control ? labelText(control) : null;
  };
  let placed = 0;
  let first = null;
  for (const problem of problems) {
    const control = problem.field ? controlFor(form, problem.field) : null;
    if (!control) continue;
    const note = document.createElement("p");
    note.className = "field-error";
    note.id = `${control.id || control.dataset.field}-problem-${placed}`;
    note.textContent = inWords(problem.message, labelFor);
    control.setAttribute("aria-invalid", "true");
    control.setAttribute("aria-describedby", note.id);
    control.insertAdjacentElement("afterend", note);
    first = first || control;
    placed += 1;
  }
  if (!placed) {
    const box = typeof fallbackBox === "string" ? document.getElementById(fallbackBox) : fallbackBox;
    if (box) {
      box.textContent = inWords(err.message, labelFor);
      box.hidden = false;
    }
  } else if (first && first.focus) {
    first.focus();
  }
}

// A button that cannot be pressed again while its request is in flight.
export async function whilePending(buttons, fn) {
  const list = Array.isArray(buttons) ? buttons : [buttons];
  if (list.some((b) => b && b.dataset.pending)) return undefined;
  for (const b of list) if (b) { b.disabled = true; b.dataset.pending = "1"; b.setAttribute("aria-busy", "true"); }
  try {
    return await fn();
  } finally {
    for (const b of list) if (b) { b.disabled = false; delete b.dataset.pending; b.removeAttribute("aria-busy"); }
  }
}

// A yes/no question in a real dialog; resolves true when the operator confirms.
export function confirmAction({ title, text, confirm, cancel = "Cancel" }) {
  return new Promise((resolve) => {
    const dialog = document.createElement("dialog");
    dialog.className = "confirm";
    dialog.setAttribute("aria-labelledby", "confirm-title");
    dialog.innerHTML = `<h2 id="confirm-title">${esc(title)}</h2><p>${esc(text)}</p>
      <div class="actions"><button type="button" class="danger" data-answer="yes">${esc(confirm)}</button>
      <button type="button" class="secondary" data-answer="no">${esc(cancel)}</button></div>`;
    document.body.appendChild(dialog);
    const done = (answer) => {
      dialog.close();
      dialog.remove();
      resolve(answer);
    };
    dialog.addEventListener("cancel", (event) => { event.preventDefault(); done(false); });
    dialog.querySelector("[data-answer=yes]").addEventListener("click", () => done(true));
    dialog.querySelector("[data-answer=no]").addEventListener("click", () => done(false));
    dialog.showModal();
    dialog.querySelector("[data-answer=no]").focus();
  });
}

// Tables wider than the screen say so (and scroll); narrow ones do not.
export function markWideTables(root = document) {
  requestAnimationFrame(() => {
    root.querySelectorAll(".table-wrap").forEach((wrap) => {
      wrap.classList.toggle("scrolls", wrap.scrollWidth > wrap.clientWidth + 1);
    });
  });
}

export function formData(form) {
  return Object.fromEntries(new FormData(form).entries());
}

export function number(value) {
  return value === "" || value === undefined || value === null ? undefined : Number(value);
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "–";
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  if (h) return `${h} h ${String(m).padStart(2, "0")} min`;
  if (m) return `${m} min ${String(r).padStart(2, "0")} s`;
  return `${r} s`;
}

export function plural(n, one, many) {
  return `${Number(n).toLocaleString("en")} ${n === 1 ? one : many}`;
}
