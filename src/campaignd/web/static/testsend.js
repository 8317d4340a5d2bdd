// "Send test": the message as it stands in a form, sent now to a few addresses or contacts,
// marked as a test and counted nowhere. Shared by the campaign editor and the edit dialog.
import { api } from "./api.js";

export const testSendFields = () => `
  <fieldset><legend>Test send</legend>
    <label for="test-to">Test recipients</label>
    <input id="test-to" name="test_to" placeholder="you@example.com, or an external id">
    <p class="hint">Sends the message above now, marked as a test; counted nowhere.</p>
    <button type="button" id="send-test">Send test</button>
    <p id="test-result" class="hint" role="status" aria-live="polite"></p>
  </fieldset>`;

export async function sendTest(id, form) {
  const to = form.test_to.value.split(",").map((s) => s.trim()).filter(Boolean);
  const body = {
    addresses: to.filter((t) => t.includes("@")),
    external_ids: to.filter((t) => !t.includes("@")),
    message: form.message.value,
  };
  const result = await api("POST", `/api/campaigns/${id}/test`, body);
  const failed = result.results.filter((r) => !r.sent);
  return `Test sent to ${result.sent} recipient(s)` +
    (failed.length ? `; not sent: ${failed.map((r) => `${r.address} (${r.error})`).join(", ")}` : ".");
}
