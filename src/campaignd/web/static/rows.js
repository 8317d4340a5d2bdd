// Repeatable rows of fields (profile requests, stages, segment conditions, variants).
// Each row's controls carry data-field="<list>.<index>.<key>" so API errors land beside them.
import { esc } from "./dom.js";

export function rowList(box, { list, legend, addLabel, fields, min = 0 }) {
  const body = document.createElement("div");
  body.className = "rows";
  const add = document.createElement("button");
  add.type = "button";
  add.className = "secondary";
  add.textContent = addLabel;
  box.replaceChildren(body, add);

  const renumber = () => {
    [...body.children].forEach((row, index) => {
      row.querySelector(".row-title").textContent = `${legend} ${index + 1}`;
      for (const control of row.querySelectorAll("[data-key]")) {
        control.dataset.field = `${list}.${index}.${control.dataset.key}`;
        control.id = `${list}-${index}-${control.dataset.key}`;
        const label = row.querySelector(`label[data-for="${control.dataset.key}"]`);
        if (label) label.htmlFor = control.id;
      }
      row.querySelector(".remove").hidden = body.children.length <= min;
    });
  };

  const addRow = (values = {}) => {
    const row = document.createElement("fieldset");
    row.className = "row";
    row.innerHTML = `<legend class="row-title"></legend>${fields.map((f) => {
      const value = values[f.key] ?? f.value ?? "";
      let control;
      if (f.type === "select") {
        control = `<select data-key="${f.key}">${f.options.map(([v, text]) =>
          `<option value="${esc(v)}" ${String(v) === String(value) ? "selected" : ""}>${esc(text)}</option>`).join("")}</select>`;
      } else if (f.type === "textarea") {
        control = `<textarea data-key="${f.key}" rows="${f.rows || 2}" spellcheck="false" placeholder="${esc(f.placeholder || "")}">${esc(value)}</textarea>`;
      } else {
        control = `<input data-key="${f.key}" type="${f.type || "text"}" ${f.attrs || ""} value="${esc(value)}" placeholder="${esc(f.placeholder || "")}">`;
      }
      return `<div class="cell cell-${f.key}"><label data-for="${f.key}">${esc(f.label)}</label>${control}</div>`;
    }).join("")}<button type="button" class="remove secondary">Remove</button>`;
    row.querySelector(".remove").addEventListener("click", () => {
      row.remove();
      renumber();
      box.dispatchEvent(new Event("change", { bubbles: true }));
    });
    body.appendChild(row);
    renumber();
  };
  add.addEventListener("click", () => {
    addRow();
    body.lastElementChild.querySelector("[data-key]").focus();
  });
  return {
    add: addRow,
    values: () => [...body.children].map((row) => Object.fromEntries(
      [...row.querySelectorAll("[data-key]")].map((c) => [c.dataset.key, c.value]))),
    clear: () => { body.replaceChildren(); },
  };
}
