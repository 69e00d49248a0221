/* Requests to the server. A failure becomes an ApiError whose message is translated
 * from the answer's `code` (API version 2), else from what the page was doing and the
 * HTTP status: the server's own sentence is never shown, so no answer reaches the user
 * in the other language. */
import { state, msg, hasText } from "./core.js";

export class ApiError extends Error {
  /** message: {key, vars}; status: the HTTP status (0: no answer). */
  constructor(message, status, data, aborted) {
    super(message.key);
    this.msg = message;
    this.code = status || 0;
    this.data = data || null;
    this.aborted = !!aborted;
  }
}

/** The message for a failed answer. `context` maps HTTP statuses to what they mean for
 *  this request (e.g. {409: "err_name_taken"}) when the answer has no known code. */
export function errorMessage(data, status, context) {
  const code = data && typeof data.code === "string" ? data.code : "";
  if (code && hasText("code_" + code)) return msg("code_" + code);
  if (context && context[status]) return msg(context[status]);
  if (!status) return msg("err_network");
  if (hasText("http_" + status)) return msg("http_" + status);
  return msg(status >= 500 ? "http_5xx" : "err_http", { code: status });
}

export function xsrfToken() {
  const m = document.cookie.match(/(?:^|;\s*)_xsrf=([^;]*)/);
  return m ? decodeURIComponent(m[1]) : state.xsrf;
}

let onSessionLost = () => {};
/** What to do when a request of a logged-in user answers 401. */
export function setSessionLost(fn) { onSessionLost = fn; }

/** JSON request. Resolves with the body; rejects with an ApiError.
 *  opts.raw: don't treat a non-zero `status` as failure (view_task);
 *  opts.allow401: a 401 is an answer, not a lost session; opts.context: see errorMessage. */
export async function api(method, url, body, opts) {
  opts = opts || {};
  const headers = { Accept: "application/json" };
  if (method !== "GET" && method !== "HEAD") headers["X-XSRFToken"] = xsrfToken();
  const init = { method: method, headers: headers, credentials: "same-origin", cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(url, init);
  } catch (e) {
    state.unreachable = true;
    throw new ApiError(msg("err_network"), 0);
  }
  state.unreachable = false;
  let data = null;
  try { data = await resp.json(); } catch (e) { data = null; }
  if (!resp.ok || !data || (!opts.raw && data.status !== 0)) {
    const err = new ApiError(errorMessage(data, resp.ok && data ? 400 : resp.status, opts.context), resp.status, data);
    if (resp.status === 401 && !opts.allow401 && state.user) {
      onSessionLost();
      err.handled = true; // the page already says the session expired
    }
    throw err;
  }
  if (typeof data.xsrf === "string") state.xsrf = data.xsrf;
  return data;
}
