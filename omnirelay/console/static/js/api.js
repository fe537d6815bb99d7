// The console's one way to the JSON API (/console/api): same-origin cookie session, the CSRF header on every
// non-GET (the token comes from /console/api/me or the login answer), OpenAI-shaped errors raised as ApiError.

export const API = "/console/api";
let csrfToken = "";

export function setCsrfToken(token) {
  csrfToken = token || "";
}

export class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    super(err.message || `request failed (HTTP ${status})`);
    this.status = status;
    this.code = err.code || err.type || null;
  }
}

/** Query string from an object, skipping empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  const s = q.toString();
  return s ? "?" + s : "";
}

/** The fetch options of one API call: JSON body, CSRF header unless GET. */
export function requestInit(method, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = csrfToken;
  const init = { method, headers, credentials: "same-origin" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  return init;
}

let onUnauthorized = () => {};
/** What to do when the session has ended (401 on a call other than login): the app shows the sign-in page. */
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

export async function api(method, path, body) {
  const resp = await fetch(API + path, requestInit(method, body));
  if (resp.status === 204) return null;
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!resp.ok) {
    if (resp.status === 401 && path !== "/login") onUnauthorized();
    throw new ApiError(resp.status, data);
  }
  return data;
}

export const get = (path, params) => api("GET", path + query(params));
export const post = (path, body) => api("POST", path, body === undefined ? {} : body);
export const patch = (path, body) => api("PATCH", path, body);
export const del = (path) => api("DELETE", path);
