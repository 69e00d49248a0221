/* The browser page of the face-swap service, as native ES modules (no build step):
 * accounts and the page's frame here; uploads, the Start button, tasks, the player and
 * the administrators' page in ./js/. Works under a strict CSP (no inline code or
 * styles; every text goes in through textContent). */
import { $, state, slots, t, msg, typeName, pickLang, fmtBytes, fmtLimit, ADMIN, USERNAME_RE } from "./js/core.js";
import { api, setSessionLost } from "./js/api.js";
import { showError, showInfo, clearNotices, renderNotices } from "./js/notices.js";
import { bindDialog, renderDialog, confirmAction } from "./js/dialog.js";
import { bindUploads, restoreUploads, resetSlot, renderSlot, renderResumeHint, renderDuration } from "./js/uploads.js";
import { updateStart, onStart, fillDefaultName, newSwapname } from "./js/start.js";
import { loadTasks, connectWs, disconnect, renderTasks, clearTasks, mergeTask, cancelTask } from "./js/tasks.js";
import { onPlayerError, stopPlayer, bindCompare, renderCompare } from "./js/media.js";
import { bindAdmin, loadCustomers, renderCustomers } from "./js/admin.js";
import { bindLibrary, loadFiles, renderLibrary, renderExtras, setUsage, clearLibrary } from "./js/library.js";
import { bindPreview, renderPreview } from "./js/preview.js";
import { bindFaces, renderFaces } from "./js/faces.js";

// ---------------------------------------------------------------- language
function applyLang() {
  document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
  document.title = t("title");
  for (const e of document.querySelectorAll("[data-i18n]")) e.textContent = t(e.dataset.i18n);
  for (const e of document.querySelectorAll("[data-i18n-label]")) e.setAttribute("aria-label", t(e.dataset.i18nLabel));
  $("lang").value = state.lang;
  renderWhoami();
  renderLimits();
  renderDialog();
  for (const slot of Object.values(slots)) renderSlot(slot);
  renderResumeHint();
  renderDuration();
  renderTasks();
  renderCustomers();
  renderLibrary();
  renderExtras();
  renderFaces();
  renderPreview();
  renderCompare();
  renderNotices(); // after the rows they may sit in
  updateStart();
}

// ---------------------------------------------------------------- session
async function boot() {
  state.lang = pickLang();
  applyLang();
  bindEvents();
  try {
    const d = await api("GET", "/api/session", undefined, { allow401: true });
    enter(d.userdata, d.limits, d);
  } catch (e) {
    showAuth();
    if (e.code !== 401) showError(e.msg);
  } finally {
    $("loading").hidden = true;
  }
}

async function refreshSession() {
  const d = await api("GET", "/api/session");
  enter(d.userdata, d.limits, d);
}

function showAuth() {
  $("auth-view").hidden = false;
  $("swap-view").hidden = true;
  $("admin-view").hidden = true;
  $("nav").hidden = true;
  $("logout").hidden = true;
  $("whoami").hidden = true;
}

function enter(user, limits, session) {
  const wasIn = state.user && state.user.id === user.id;
  state.user = user;
  state.limits = limits || null;
  // Storage used of the quota (API version 2); the page also reads it under `limits`.
  const s = session || {};
  const used = s.usage_bytes !== undefined ? s.usage_bytes : (limits || {}).usage_bytes;
  const quota = s.quota_bytes !== undefined ? s.quota_bytes : (limits || {}).quota_bytes;
  setUsage(used === undefined ? NaN : used, quota);
  $("auth-view").hidden = true;
  $("nav").hidden = false;
  $("logout").hidden = false;
  $("whoami").hidden = false;
  $("nav-admin").hidden = user.usertype !== ADMIN;
  renderWhoami();
  if (!wasIn) {
    restoreUploads();
    if (!$("swapname").value) fillDefaultName();
    loadTasks();
    loadFiles();
    connectWs();
  }
  renderResumeHint();
  renderLimits();
  route();
  updateStart();
}

function leave() {
  state.user = null;
  state.limits = null;
  disconnect();
  for (const s of Object.values(slots)) {
    if (s.abort) s.abort();
    resetSlot(s);
    s.refused = false;
  }
  clearTasks();
  clearLibrary();
  stopPlayer();
  state.adminRows = [];
  $("customers-body").replaceChildren();
  $("swapname").value = "";
  showAuth();
}

function sessionLost() {
  leave();
  showError(msg("err_session"), "login-error");
}

function renderWhoami() {
  if (!state.user) return;
  const who = t("whoami", { name: state.user.username, type: typeName(state.user.usertype) });
  $("whoami").textContent = who;
  $("whoami").title = who; // cut short on a phone
}

function renderLimits() {
  const l = state.limits;
  $("limits").textContent = l && l.upload_bytes && l.video_seconds
    ? t("limits", { size: fmtBytes(l.upload_bytes), dur: fmtLimit(l.video_seconds) }) : "";
}

/** Run an action of a form: its button disabled meanwhile, its failure shown at `place`. */
async function withButton(button, place, fn) {
  button.disabled = true;
  try {
    return await fn();
  } catch (e) {
    if (!e.handled) showError(e.msg, place);
    return undefined;
  } finally {
    button.disabled = false;
    updateStart();
  }
}

function invalid(id, key, place) {
  showError(msg(key), place);
  $(id).setAttribute("aria-invalid", "true");
  $(id).focus();
}

async function onLogin(ev) {
  ev.preventDefault();
  clearNotices();
  const username = $("login-username").value.trim();
  const password = $("login-password").value;
  if (!username) { invalid("login-username", "err_required", "login-error"); return; }
  if (!password) { invalid("login-password", "err_required", "login-error"); return; }
  await withButton($("login-submit"), "login-error", async () => {
    await login(username, password);
    $("login-password").value = "";
  });
}

async function login(username, password) {
  const d = await api("POST", "/api/mgr/customers", { action: "login", data: { username: username, password: password } },
    { allow401: true, context: { 401: "err_login", 403: "err_login_refused", 429: "code_too_many_attempts" } });
  try {
    await refreshSession();
  } catch (e) {
    enter(d.userdata, null); // the session route may be missing: still usable
  }
}

async function onRegister(ev) {
  ev.preventDefault();
  clearNotices();
  const username = $("reg-username").value.trim();
  const password = $("reg-password").value;
  const phone = $("reg-phone").value.trim();
  const email = $("reg-email").value.trim();
  const place = "register-error";
  if (!USERNAME_RE.test(username)) { invalid("reg-username", "err_username", place); return; }
  if (password.length < 6) { invalid("reg-password", "err_password", place); return; }
  if (password !== $("reg-password2").value) { invalid("reg-password2", "err_passwords", place); return; }
  if (phone && !/^\d{6,15}$/.test(phone)) { invalid("reg-phone", "err_phone", place); return; }
  if (email && !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(email)) { invalid("reg-email", "err_email", place); return; }
  const data = { username: username, password: password };
  if (phone) data.phonenumber = phone;
  if (email) data.address = email;
  await withButton($("register-submit"), place, async () => {
    await api("POST", "/api/mgr/customers", { action: "add_customer", data: data }, { context: { 409: "code_name_taken", 400: "err_register_bad" } });
    await login(username, password);
    for (const id of ["reg-password", "reg-password2"]) $(id).value = "";
    showInfo(msg("registered"));
  });
}

async function onLogout() {
  clearNotices();
  await withButton($("logout"), "msg", async () => {
    await api("POST", "/api/mgr/customers", { action: "logout" }, { allow401: true });
    leave();
    showInfo(msg("logged_out"));
    $("login-username").focus();
  });
}

/** Delete my account (and everything of mine) after the password and a confirmation. */
async function onDeleteAccount(ev) {
  ev.preventDefault();
  clearNotices();
  const password = $("account-password").value;
  if (!password) { invalid("account-password", "account_password_needed", "account-error"); return; }
  const name = state.user ? state.user.username : "";
  if (!await confirmAction(msg("confirm_delete_account", { name: name }), msg("account_delete"))) return;
  await withButton($("account-delete"), "account-error", async () => {
    await api("POST", "/api/mgr/customers", { action: "delete_account", data: { password: password } },
      { context: { 403: "code_wrong_password", 401: "code_wrong_password" } });
    $("account-password").value = "";
    leave();
    showInfo(msg("account_deleted"));
  });
}

// ---------------------------------------------------------------- views
function route() {
  if (!state.user) return;
  const admin = location.hash === "#admin" && state.user.usertype === ADMIN;
  $("swap-view").hidden = admin;
  $("admin-view").hidden = !admin;
  $("nav-swap").setAttribute("aria-current", admin ? "false" : "page");
  $("nav-admin").setAttribute("aria-current", admin ? "page" : "false");
  if (admin) loadCustomers();
}

// ---------------------------------------------------------------- wiring
function bindEvents() {
  setSessionLost(sessionLost);
  bindDialog();
  bindUploads();
  bindAdmin();
  bindLibrary();
  bindPreview();
  bindFaces();
  bindCompare();
  $("lang").addEventListener("change", () => {
    state.lang = $("lang").value === "en" ? "en" : "zh";
    try { window.localStorage.setItem("faceswap.lang", state.lang); } catch (e) { /* ignore */ }
    applyLang();
  });
  $("msg-close").addEventListener("click", () => clearNotices());
  $("login-form").addEventListener("submit", onLogin);
  $("register-form").addEventListener("submit", onRegister);
  for (const e of document.querySelectorAll("#auth-view input")) e.addEventListener("input", () => e.removeAttribute("aria-invalid"));
  $("logout").addEventListener("click", onLogout);
  $("account-form").addEventListener("submit", onDeleteAccount);
  $("swapname").addEventListener("input", updateStart);
  $("swap-form").addEventListener("submit", onStart);
  $("current-cancel").addEventListener("click", () => {
    if (state.currentId) cancelTask(state.currentId, $("current-cancel"));
  });
  $("tasks-refresh").addEventListener("click", () => { clearNotices(); loadTasks(); });
  $("tasks-more").addEventListener("click", () => { clearNotices(); loadTasks(true); });
  window.addEventListener("faceswap:stored", () => { loadFiles(); refreshSession().catch(() => {}); });
  $("player").addEventListener("error", onPlayerError);
  window.addEventListener("hashchange", () => { clearNotices(); route(); });
  window.addEventListener("online", () => { if (state.user && !state.ws) connectWs(); });
  window.addEventListener("faceswap:session", () => { refreshSession().catch(() => {}); });
  window.addEventListener("faceswap:conn", updateStart);
}

// Exposed for tests and debugging only.
window.faceswapPage = { state: state, slots: slots, mergeTask: mergeTask, newSwapname: newSwapname };

boot();
