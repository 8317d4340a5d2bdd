// The cluster: every node, whether it is alive, and which campaign shards it runs now.
import { api } from "./api.js";
import { esc, render } from "./dom.js";

const LINK = { traffic: "traffic", message: "messages" };

// "node-a (shard 0), node-b (shard 1)" for a campaign's info.nodes / nodes.
export function holdersText(nodes) {
  if (!nodes || nodes.length === 0) return "no node";
  return nodes.map((n) => `${n.node} (shard ${n.shard})`).join(", ");
}

function holding(list) {
  if (list.length === 0) return "nothing";
  return list
    .map((h) => `<a href="#/${LINK[h.kind]}/${h.campaign_id}">${esc(h.kind)} ${esc(h.campaign_id)}</a>`
      + (h.shard ? ` shard ${esc(h.shard)}` : ""))
    .join(", ");
}

export async function nodesView(signal) {
  render(`
    <h1>Nodes</h1>
    <p>Every process that serves the API or runs campaigns on this database.</p>
    <table class="table" id="nodes-table">
      <thead><tr><th scope="col">Name</th><th scope="col">Role</th><th scope="col">Alive</th>
        <th scope="col">Last seen</th><th scope="col">Runs</th></tr></thead>
      <tbody id="nodes-rows"></tbody>
    </table>`);
  const draw = async () => {
    const nodes = await api("GET", "/api/nodes");
    document.getElementById("nodes-rows").innerHTML = nodes.map((n) => `
      <tr><td>${esc(n.name)}${n.leader ? " (leader)" : ""}</td>
        <td>${esc(n.role)}${n.engine ? "" : ", API only"}</td>
        <td>${n.alive ? "yes" : "no"}</td><td>${esc(n.last_seen)}</td>
        <td>${holding(n.holding)}</td></tr>`).join("");
  };
  await draw();
  const timer = setInterval(() => draw().catch(() => {}), 2000);
  signal.addEventListener("abort", () => clearInterval(timer));
}
