// Hash routes to views; each view gets an AbortSignal so its polling stops on navigation.
import { setToken } from "./api.js";
import { render } from "./dom.js";
import { newMessageView, newTrafficView } from "./editor.js";
import { listView } from "./list.js";
import { monitorView } from "./monitor.js";
import { nodesView } from "./nodes.js";
import { reportView } from "./report.js";
import { setupView } from "./setup.js";

let controller = null;

const ROUTES = [
  [/^#?\/?$/, (m, signal) => listView(signal)],
  [/^#\/traffic\/new$/, () => newTrafficView()],
  [/^#\/messages\/new$/, () => newMessageView()],
  [/^#\/setup$/, () => setupView()],
  [/^#\/nodes$/, (m, signal) => nodesView(signal)],
  [/^#\/(traffic|messages)\/(\d+)$/, (m, signal) => monitorView(m[1], Number(m[2]), signal)],
  [/^#\/(traffic|messages)\/(\d+)\/report$/, (m) => reportView(m[1], Number(m[2]))],
];

async function route() {
  if (controller) controller.abort();
  controller = new AbortController();
  const hash = location.hash || "#/";
  for (const [pattern, show] of ROUTES) {
    const match = hash.match(pattern);
    if (match) {
      try {
        await show(match, controller.signal);
      } catch (err) {
        render(`<p class="error" role="alert"></p>`).querySelector("p").textContent = err.message;
      }
      document.getElementById("view").focus();
      return;
    }
  }
  render("<h1>Not found</h1><p><a href=\"#/\">Back to the campaigns</a></p>");
}

document.getElementById("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  setToken(document.getElementById("token-input").value);
  document.getElementById("token-bar").hidden = true;
  route();
});

window.addEventListener("hashchange", route);
route();
