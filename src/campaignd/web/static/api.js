// Fetch wrapper: JSON in and out, the bearer token when one is set, the API's own sentences.
const TOKEN_KEY = "campaignd-token";

export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.error ? body.error : `Request failed with HTTP ${status}.`);
    this.status = status;
    this.body = body || {};
  }
}

// Listeners told when the service asks for a token (401): the app shows its sign-in page.
const signInNeeded = new Set();
export function onSignInNeeded(listener) {
  signInNeeded.add(listener);
}

export function setToken(token) {
  localStorage.setItem(TOKEN_KEY, token);
}

export function hasToken() {
  return Boolean(localStorage.getItem(TOKEN_KEY));
}

export function signOut() {
  localStorage.removeItem(TOKEN_KEY);
}

function authHeaders() {
  const token = localStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function errorBody(response) {
  try {
    return await response.json();
  } catch (err) {
    return null;
  }
}

// The bytes of an API route, fetched with the bearer token a plain link could not carry.
export async function fetchBlob(path) {
  const response = await fetch(path, { headers: authHeaders() });
  if (response.status === 401) signInNeeded.forEach((listener) => listener());
  if (!response.ok) throw new ApiError(response.status, await errorBody(response));
  return response.blob();
}

export function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export async function download(path, filename) {
  saveBlob(await fetchBlob(path), filename);
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
  if (response.status === 401) signInNeeded.forEach((listener) => listener());
  if (response.status === 204) return null;
  const data = await errorBody(response);
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}
