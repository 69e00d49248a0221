/* The administrators' page: customers listed, searched and paged; user type changes
 * (granting administrator asks first; a refused change shows the type actually kept). */
import { $, state, t, msg, el, typeName, fmtBytes, USERTYPES, ADMIN, PAGE_SIZE } from "./core.js";
import { api } from "./api.js";
import { showError, showInfo, clearNotices } from "./notices.js";
import { confirmAction } from "./dialog.js";

export async function loadCustomers() {
  if (!state.user || state.user.usertype !== ADMIN) return;
  const q = new URLSearchParams({ action: "list_customer", pagenum: String(state.adminPage), pagesize: String(PAGE_SIZE), keywords: state.adminKeywords });
  $("page-prev").disabled = true;
  $("page-next").disabled = true;
  $("admin-search-btn").disabled = true;
  try {
    const d = await api("GET", "/api/mgr/customers?" + q.toString());
    state.adminRows = d.retlist || [];
    state.adminTotal = Number(d.total) || 0;
    const pages = Math.max(1, Math.ceil(state.adminTotal / PAGE_SIZE));
    if (state.adminPage > pages && state.adminTotal > 0) {
      state.adminPage = pages;
      $("admin-search-btn").disabled = false;
      return loadCustomers();
    }
  } catch (e) {
    if (!e.handled) showError(e.msg, "admin-error");
  } finally {
    $("admin-search-btn").disabled = false;
  }
  renderCustomers();
}

async function changeType(c, sel, btn) {
  clearNotices();
  const newtype = Number(sel.value);
  if (newtype === ADMIN) {
    const ok = await confirmAction(msg("confirm_grant_admin", { name: c.username }), msg("grant_admin"));
    if (!ok) { sel.value = String(c.usertype); btn.disabled = true; return; }
  }
  btn.disabled = true;
  sel.disabled = true;
  try {
    await api("POST", "/common/modifytype", { userid: c.id, newtype: newtype });
    c.usertype = newtype;
    showInfo(msg("type_changed", { name: c.username, type: msg("type_" + newtype) }));
  } catch (e) {
    // The server kept the old type: show that, not the refused choice.
    if (!e.handled) showError(msg("err_type_change", { name: c.username, type: msg("type_" + c.usertype), msg: e.msg }), "type-error-" + c.id);
  } finally {
    sel.disabled = false;
    sel.value = String(c.usertype);
    btn.disabled = true;
  }
  if (state.user && c.id === state.user.id) window.dispatchEvent(new Event("faceswap:session"));
}

export function renderCustomers() {
  const body = $("customers-body");
  body.replaceChildren();
  for (const c of state.adminRows) {
    const tr = el("tr");
    tr.dataset.userid = String(c.id);
    const cell = (cls, text, label) => {
      const td = el("td", cls, text);
      td.dataset.label = label;
      return td;
    };
    tr.append(cell("", String(c.id), "ID"));
    tr.append(cell("cust-name", c.username, t("username")));
    const tdType = cell("cust-type", undefined, t("usertype"));
    const sel = el("select");
    sel.id = "type-" + c.id;
    sel.setAttribute("aria-label", t("usertype") + " " + c.username);
    for (const n of USERTYPES) {
      const o = el("option", "", typeName(n));
      o.value = String(n);
      if (n === c.usertype) o.selected = true;
      sel.append(o);
    }
    const btn = el("button", "small", t("change_type"));
    btn.type = "button";
    btn.disabled = true;
    btn.setAttribute("aria-label", t("change_type") + " " + c.username);
    sel.addEventListener("change", () => { btn.disabled = Number(sel.value) === c.usertype; });
    btn.addEventListener("click", () => changeType(c, sel, btn));
    const err = el("p", "field-error");
    err.id = "type-error-" + c.id;
    err.setAttribute("role", "alert");
    err.hidden = true;
    tdType.append(sel, btn, err);
    tr.append(tdType);
    tr.append(cell("", c.phonenumber || "", t("phone")));
    tr.append(cell("", c.address || "", t("email")));
    tr.append(cell("cust-storage", storageText(c), t("storage_col")));
    tr.append(cell("cust-tasks", tasksText(c), t("tasks_col")));
    tr.append(accountCell(c, cell));
    body.append(tr);
  }
  const pages = Math.max(1, Math.ceil(state.adminTotal / PAGE_SIZE));
  $("page-info").textContent = t("page_info", { page: state.adminPage, pages: pages, total: state.adminTotal });
  $("page-prev").disabled = state.adminPage <= 1;
  $("page-next").disabled = state.adminPage >= pages;
}

/** Storage of a customer (API version 2: usage_bytes / quota_bytes in the listing). */
function storageText(c) {
  const used = Number(c.usage_bytes);
  if (!Number.isFinite(used)) return "–";
  const quota = Number(c.quota_bytes);
  return quota > 0 ? t("storage_short", { used: fmtBytes(used), quota: fmtBytes(quota) }) : fmtBytes(used);
}

/** A customer's tasks: a number, or {total, active} (or the names the server uses). */
function tasksText(c) {
  const v = c.tasks !== undefined ? c.tasks : c.task_count;
  if (v === undefined || v === null) return "–";
  if (typeof v === "number") {
    const active = Number(c.active_tasks) || 0;
    return active > 0 ? t("tasks_short", { total: v, active: active }) : String(v);
  }
  const total = Number(v.total !== undefined ? v.total : v.count);
  const active = Number(v.active !== undefined ? v.active : (Number(v.queued) || 0) + (Number(v.running) || 0));
  if (!Number.isFinite(total)) return "–";
  return active > 0 ? t("tasks_short", { total: total, active: active }) : String(total);
}

/** Enabled or disabled, with the button that changes it, and delete (asks first). */
function accountCell(c, cell) {
  const td = cell("cust-account", undefined, t("account_col"));
  const self = state.user && c.id === state.user.id;
  td.append(el("span", "badge " + (c.disabled ? "state-failed" : "state-finished"), t(c.disabled ? "account_disabled" : "account_active")));
  const toggle = el("button", "small secondary cust-toggle", t(c.disabled ? "enable" : "disable"));
  toggle.type = "button";
  toggle.setAttribute("aria-label", t(c.disabled ? "enable" : "disable") + " " + c.username);
  toggle.disabled = self; // an administrator does not lock themself out
  toggle.addEventListener("click", () => setDisabled(c, !c.disabled, toggle));
  const del = el("button", "small danger cust-delete", t("delete"));
  del.type = "button";
  del.setAttribute("aria-label", t("delete") + " " + c.username);
  del.disabled = self;
  del.addEventListener("click", () => deleteCustomer(c, del));
  const err = el("p", "field-error");
  err.id = "account-error-" + c.id;
  err.setAttribute("role", "alert");
  err.hidden = true;
  td.append(toggle, del, err);
  return td;
}

async function setDisabled(c, disabled, btn) {
  clearNotices();
  if (disabled) {
    const ok = await confirmAction(msg("confirm_disable", { name: c.username }), msg("disable"));
    if (!ok) return;
  }
  btn.disabled = true;
  try {
    await api("POST", "/api/mgr/customers", { action: "disable_customer", data: { id: c.id, disabled: disabled } });
    c.disabled = disabled;
    renderCustomers();
    showInfo(msg(disabled ? "customer_disabled" : "customer_enabled", { name: c.username }));
  } catch (e) {
    btn.disabled = false;
    // Nothing changed: the row still shows the real state.
    if (!e.handled) showError(msg("err_account_change", { name: c.username, msg: e.msg }), "account-error-" + c.id);
  }
}

async function deleteCustomer(c, btn) {
  clearNotices();
  const ok = await confirmAction(msg("confirm_delete_customer", { name: c.username }), msg("delete_customer"));
  if (!ok) return;
  btn.disabled = true;
  try {
    await api("POST", "/api/mgr/customers", { action: "delete_customer", data: { id: c.id } });
    showInfo(msg("customer_deleted", { name: c.username }));
    await loadCustomers();
  } catch (e) {
    btn.disabled = false;
    if (!e.handled) showError(msg("err_account_change", { name: c.username, msg: e.msg }), "account-error-" + c.id);
  }
}

export function bindAdmin() {
  $("admin-search").addEventListener("submit", (ev) => {
    ev.preventDefault();
    clearNotices();
    state.adminKeywords = $("admin-keywords").value.trim();
    state.adminPage = 1;
    loadCustomers();
  });
  $("page-prev").addEventListener("click", () => { if (state.adminPage > 1) { clearNotices(); state.adminPage -= 1; loadCustomers(); } });
  $("page-next").addEventListener("click", () => { clearNotices(); state.adminPage += 1; loadCustomers(); });
}
