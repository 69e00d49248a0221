/* The administrators' page: customers listed, searched and paged; user type changes
 * (granting administrator asks first; a refused change shows the type actually kept). */
import { $, state, t, msg, el, typeName, USERTYPES, ADMIN, PAGE_SIZE } from "./core.js";
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
    body.append(tr);
  }
  const pages = Math.max(1, Math.ceil(state.adminTotal / PAGE_SIZE));
  $("page-info").textContent = t("page_info", { page: state.adminPage, pages: pages, total: state.adminTotal });
  $("page-prev").disabled = state.adminPage <= 1;
  $("page-next").disabled = state.adminPage >= pages;
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
