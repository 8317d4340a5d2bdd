// Hash routes to views; each view gets an AbortSignal so its polling stops on navigation.
import { hasToken, onSignInNeeded, setToken, signOut } from "./api.js";
import { esc, markWideTables, render, setTitle } from "./dom.js";
import { editMessageView, editTrafficView, newMessageView, newTrafficView } from "./editor.js";
import { listView } from "./list.js";
import { monitorView } from "./monitor.js";
import { nodesView } from "./nodes.js";
import { reportView } from "./report.js";
import { setupView } from "./setup.js";

let controller = null;
let signingIn = false;

// [pattern, nav section marked as current, view]
const ROUTES = [
  [/^#?\/?(\?.*)?$/, "list", (m, signal) => listView(signal, new URLSearchParams(m[1] || ""))],
  [/^#\/traffic\/new$/, "traffic-new", () => newTrafficView()],
  [/^#\/messages\/new$/, "messages-new", () => newMessageView()],
  [/^#\/traffic\/(\d+)\/edit$/, "list", (m) => editTrafficView(Number(m[1]))],
  [/^#\/messages\/(\d+)\/edit$/, "list", (m) => editMessageView(Number(m[1]))],
  [/^#\/setup$/, "setup", () => setupView()],
  [/^#\/nodes$/, "nodes", (m, signal) => nodesView(signal)],
  [/^#\/(traffic|messages)\/(\d+)$/, "list", (m, signal) => monitorView(m[1], Number(m[2]), signal)],
  [/^#\/(traffic|messages)\/(\d+)\/report$/, "list", (m, signal) => reportView(m[1], Number(m[2]), signal)],
];

function markCurrent(section) {
  for (const link of document.querySelectorAll("#main-nav a")) {
    if (link.dataset.section === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.getElementById("sign-out").hidden = !hasToken();
}

function showSignIn(message) {
  if (controller) controller.abort();
  signingIn = true;
  markCurrent(null);
  setTitle("Sign in");
  const root = render(`
    <h1>Sign in</h1>
    <form id="token-form" class="card form narrow">
      <p>This service asks for its API token (the value of <code>CAMPAIGND_API_TOKEN</code>
      or <code>--api-token</code> it was started with).</p>
      <label for="token-input">API token</label>
      <input id="token-input" type="password" autocomplete="current-password" required>
      <p id="token-error" class="error" role="alert" ${message ? "" : "hidden"}>${esc(message || "")}</p>
      <button type="submit">Sign in</button>
    </form>`);
  root.querySelector("#token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setToken(document.getElementById("token-input").value.trim());
    signingIn = false;
    route();
  });
  document.getElementById("token-input").focus();
}

onSignInNeeded(() => {
  if (signingIn) return;
  showSignIn(hasToken() ? "That token was not accepted; check it and sign in again." : "");
});

async function route() {
  if (controller) controller.abort();
  controller = new AbortController();
  signingIn = false;
  const hash = location.hash || "#/";
  for (const [pattern, section, show] of ROUTES) {
    const match = hash.match(pattern);
    if (match) {
      markCurrent(section);
      try {
        await show(match, controller.signal);
      } catch (err) {
        if (signingIn) return;
        setTitle("Problem");
        render(`<p class="error" role="alert"></p><p><a href="#/">Back to the campaigns</a></p>`)
          .querySelector("p").textContent = err.message;
      }
      if (!signingIn) document.getElementById("view").focus();
      return;
    }
  }
  markCurrent(null);
  setTitle("Not found");
  render("<h1>Not found</h1><p><a href=\"#/\">Back to the campaigns</a></p>");
}

document.getElementById("sign-out").addEventListener("click", () => {
  signOut();
  showSignIn("Signed out.");
});

// After a resize, charts are drawn again at their new width and wide tables say so.
let resizing;
window.addEventListener("resize", () => {
  clearTimeout(resizing);
  resizing = setTimeout(() => {
    markWideTables();
    window.dispatchEvent(new Event("campaignd:redraw"));
  }, 150);
});

window.addEventListener("hashchange", route);
route();
