// Fetch wrapper: JSON in and out, the bearer token when one is set, the API's own sentences.
const TOKEN_KEY = "campaignd-token";

export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.error ? body.error : `Request failed with HTTP ${status}.`);
    this.status = status;
    this.body = body || {};
  }
}

export function setToken(token) {
  localStorage.setItem(TOKEN_KEY, token);
}

function authHeaders() {
  const token = localStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

// A download through fetch, so it carries the bearer token a plain link could not.
export async function download(path, filename) {
  const response = await fetch(path, { headers: authHeaders() });
  if (!response.ok) {
    let data = null;
    try {
      data = await response.json();
    } catch (err) {
      data = null;
    }
    throw new ApiError(response.status, data);
  }
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export async function api(method, path, body, { contentType } = {}) {
  const headers = authHeaders();
  let payload;
  if (body !== undefined) {
    headers["Content-Type"] = contentType || "application/json";
    payload = contentType ? body : JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body: payload });
  } catch (err) {
    throw new ApiError(0, { error: "The service cannot be reached; is it running?" });
  }
  if (response.status === 401) {
    document.getElementById("token-bar").hidden = false;
  }
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch (err) {
    data = null;
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}
