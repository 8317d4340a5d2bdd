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
  return root;
}

export function badge(status) {
  return `<span class="badge badge-${esc(status)}">${esc(status)}</span>`;
}

export function showError(target, err) {
  const box = typeof target === "string" ? document.getElementById(target) : target;
  if (!box) return;
  box.textContent = err ? err.message : "";
  box.hidden = !err;
}

export function formData(form) {
  return Object.fromEntries(new FormData(form).entries());
}

export function number(value) {
  return value === "" || value === undefined ? undefined : Number(value);
}
