// Things the API returns as settings, said the way an operator would say them.
import { journeyWords } from "./steps.js";

const SECURITY_WORDS = (c) => (c.use_tls ? (c.validate_certs === false ? "TLS, certificate not checked" : "TLS")
  : c.starttls ? "STARTTLS" : "no encryption");

export const CHANNEL_NAMES = { webhook: "Webhook", smtp: "SMTP (e-mail)", telegram: "Telegram bot", log: "Log file" };

export function accountWords(account) {
  const c = account.config || {};
  let text;
  if (account.channel === "webhook") {
    text = `Posts to ${c.url}${c.signing_secret ? ", signed" : ""}`;
  } else if (account.channel === "smtp") {
    text = `E-mail through ${c.host}:${c.port} from ${c.from} (${SECURITY_WORDS(c)}${c.username ? `, signs in as ${c.username}` : ""})`;
  } else if (account.channel === "telegram") {
    text = `Telegram bot${c.api_base_url ? ` via ${c.api_base_url}` : ""}`;
  } else if (account.channel === "log") {
    text = `Writes each message to the file ${c.path} (a dry run)`;
  } else {
    text = account.channel;
  }
  if (c.max_attempts) text += `; tries ${c.max_attempts} time${c.max_attempts === 1 ? "" : "s"}`;
  if (account.rate_per_minute) text += `; at most ${account.rate_per_minute} per minute`;
  return `${text}.`;
}

export function requestWords(r) {
  return `${r.method || "GET"} ${r.path}${r.weight && r.weight !== 1 ? ` ×${r.weight}` : ""}`;
}

export function profileWords(p) {
  if (p.steps?.length) return journeyWords(p);
  const parts = (p.requests || p.steps || []).map(requestWords);
  return `${parts.join(", ")}${p.think_time_ms ? `; waits ${p.think_time_ms} ms between requests` : ""}`;
}
