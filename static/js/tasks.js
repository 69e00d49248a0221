/* The user's tasks: the list, the current task's card, cancelling, and live progress over
 * the WebSocket with view_task polling as the fallback; "server unreachable" when neither
 * gets an answer. */
import { $, state, t, msg, render, el, warningMessage, fmtTime, fmtDate, POLL_MS, TERMINAL, KNOWN_STATES, TASK_PAGE, hasText } from "./core.js";
import { api } from "./api.js";
import { showError, showInfo, clearNotices } from "./notices.js";
import { confirmAction } from "./dialog.js";
import { play, stopPlayer, downloadUrl, isImagePath } from "./media.js";
import { newSwapname } from "./start.js";

/** The newest page of the task list (`more`: the next, older page). */
export async function loadTasks(more) {
  const q = new URLSearchParams({ limit: String(TASK_PAGE) });
  if (more && state.tasksBefore) q.set("before", state.tasksBefore);
  $("tasks-more").disabled = true;
  try {
    const d = await api("GET", "/video/tasks?" + q.toString());
    const page = d.tasks || [];
    // A server that ignores `limit` sends everything at once: no next page then.
    // The server says where the next page starts (next_before, null at the end).
    const paged = "next_before" in d;
    const hasNext = paged ? !!d.next_before : page.length === TASK_PAGE;
    // The next page starts after the oldest task loaded so far (a refresh of the newest
    // page does not move it back).
    if (page.length && (more || !state.tasksBefore)) {
      state.tasksBefore = paged && d.next_before ? d.next_before : page[page.length - 1].task_id;
      state.tasksMore = hasNext;
    } else if (more) {
      state.tasksMore = false;
    }
    for (const entry of page) mergeTask(entry);
    if (!state.currentId) {
      const active = (d.tasks || []).find((x) => !TERMINAL.has(x.state));
      if (active) state.currentId = active.task_id;
    }
    renderCurrent();
    renderTaskOrder();
    if (!state.wsLive && hasActive()) startPolling();
  } catch (e) {
    if (state.user && !e.handled) showError(e.msg, "tasks-error");
  } finally {
    $("tasks-more").hidden = !state.tasksMore;
    $("tasks-more").disabled = false;
    renderConn();
  }
}

export function hasActive() {
  for (const task of state.tasks.values()) if (!TERMINAL.has(task.state)) return true;
  return false;
}

/** Merge a task entry (from /video/tasks) or a progress message (from view_task or the
 *  WebSocket) into the task table and re-render it. */
export function mergeTask(m, taskId) {
  const id = m.task_id || taskId;
  if (!id) return null;
  const known = state.tasks.get(id);
  const task = known || { task_id: id, swapname: m.swapname || id, created: new Date().toISOString(), progress: 0, state: "queued" };
  const before = task.state;
  for (const k of ["swapname", "created", "imagepath", "videopath", "quality", "frames_done", "frames_total", "fps", "eta_s", "filepath", "start_s", "end_s"]) {
    if (m[k] !== undefined && m[k] !== null) task[k] = m[k];
  }
  if (typeof m.code === "string") task.code = m.code;
  if (Array.isArray(m.warnings)) task.warnings = m.warnings;
  if (typeof m.error_code === "string") task.code = m.error_code;
  if (m.status === 1) {
    task.state = "finished";
    task.progress = 100;
  } else if (m.status === 2) {
    task.state = KNOWN_STATES.has(m.state) && TERMINAL.has(m.state) && m.state !== "finished" ? m.state : "failed";
  } else {
    if (KNOWN_STATES.has(m.state)) task.state = m.state;
    if (typeof m.progress === "number") task.progress = m.progress;
    else if (m.progress !== undefined && m.progress !== "" && !isNaN(Number(m.progress))) task.progress = Number(m.progress);
    if (task.state === "finished") task.progress = 100;
  }
  if (TERMINAL.has(task.state)) task.cancelling = false;
  state.tasks.set(id, task);
  renderTask(task);
  if (!known) renderTaskOrder();
  if (known && before !== task.state) onTransition(task, before);
  if (id === state.currentId) renderCurrent();
  return task;
}

/** Why a task ended without a result, in the page's language (the server's `error` is an
 *  English sentence: only its code, when the server sends one, is used). */
function taskProblem(task) {
  if (task.state === "expired") return msg("expired_detail");
  if (task.state === "deleted") return msg("deleted_detail");
  if (task.state !== "failed") return null;
  if (task.problem) return task.problem;
  if (task.code && hasText("code_" + task.code)) return msg("code_" + task.code);
  return msg("err_task_generic");
}

function onTransition(task, before) {
  const current = task.task_id === state.currentId;
  if (task.state === "finished") {
    showInfo(msg("finished", { name: task.swapname }));
    if (current && task.filepath) play(task, true);
    window.dispatchEvent(new Event("faceswap:stored")); // a new result in the library
  } else if (task.state === "failed" && !TERMINAL.has(before)) {
    showError(msg("err_task", { name: task.swapname, msg: taskProblem(task) }), current ? "current-error" : "tasks-error");
  } else if (task.state === "cancelled") {
    showInfo(msg("cancelled", { name: task.swapname }));
  }
  renderConn();
}

export function renderTaskOrder() {
  const list = [...state.tasks.values()].sort((a, b) => String(b.created || "").localeCompare(String(a.created || "")));
  const ul = $("tasks");
  for (const task of list) {
    const row = state.rows.get(task.task_id) || renderTask(task);
    ul.appendChild(row.li);
  }
  $("tasks-empty").hidden = list.length > 0;
}

function stateLabel(task) {
  if (!TERMINAL.has(task.state) && task.cancelling) return t("state_cancelling");
  return hasText("state_" + task.state) ? t("state_" + task.state) : t("state_unknown");
}

export function renderTask(task) {
  let row = state.rows.get(task.task_id);
  if (!row) {
    row = { li: el("li", "task") };
    row.li.dataset.taskId = task.task_id;
    const head = el("div", "task-head");
    row.name = el("strong", "task-name");
    row.state = el("span", "badge");
    head.append(row.name, row.state);
    row.progress = el("progress", "task-progress");
    row.progress.max = 100;
    row.detail = el("p", "task-detail");
    row.warnings = el("ul", "warnings");
    row.created = el("p", "task-created");
    const actions = el("div", "task-actions");
    row.cancel = el("button", "secondary small task-cancel");
    row.cancel.type = "button";
    row.cancel.addEventListener("click", () => cancelTask(task.task_id, row.cancel));
    row.play = el("button", "small task-play");
    row.play.type = "button";
    row.play.addEventListener("click", () => play(state.tasks.get(task.task_id), true));
    row.download = el("a", "button small secondary task-download");
    row.download.setAttribute("download", "");
    row.retry = el("button", "small secondary task-retry");
    row.retry.type = "button";
    row.retry.addEventListener("click", () => retryTask(task.task_id, row.retry));
    row.remove = el("button", "small danger task-delete");
    row.remove.type = "button";
    row.remove.addEventListener("click", () => deleteTask(task.task_id, row.remove));
    row.error = el("p", "field-error");
    row.error.id = "task-error-" + task.task_id.replace(/[^A-Za-z0-9_-]/g, "_");
    row.error.setAttribute("role", "alert");
    row.error.hidden = true;
    actions.append(row.play, row.download, row.retry, row.cancel, row.remove);
    row.li.append(head, row.progress, row.detail, row.warnings, row.created, actions, row.error);
    state.rows.set(task.task_id, row);
  }
  const active = !TERMINAL.has(task.state);
  const problem = taskProblem(task);
  row.li.dataset.state = task.state;
  row.name.textContent = task.swapname;
  row.state.textContent = stateLabel(task);
  row.state.className = "badge state-" + (KNOWN_STATES.has(task.state) ? task.state : "unknown");
  row.progress.value = Number(task.progress) || 0;
  row.progress.hidden = !active;
  row.progress.setAttribute("aria-label", t("swap_progress") + " " + task.swapname);
  row.detail.textContent = problem ? render(problem) : (active ? progressDetail(task, true) : "");
  row.detail.classList.toggle("error", task.state === "failed");
  row.warnings.replaceChildren(...(task.warnings || []).map((w) => el("li", "", render(warningMessage(w)))));
  row.warnings.hidden = !(task.warnings && task.warnings.length);
  row.created.textContent = fmtDate(task.created);
  row.cancel.textContent = t("cancel");
  row.cancel.setAttribute("aria-label", t("cancel") + " " + task.swapname);
  row.cancel.hidden = !active;
  row.cancel.disabled = !!task.cancelling;
  const done = task.state === "finished" && !!task.filepath;
  const playKey = isImagePath(task.filepath) ? "view" : "play";
  row.play.textContent = t(playKey);
  row.play.setAttribute("aria-label", t(playKey) + " " + task.swapname);
  const retryable = ["failed", "cancelled", "finished", "expired", "deleted"].includes(task.state) && !task.retrying;
  row.retry.textContent = t("retry");
  row.retry.setAttribute("aria-label", t("retry") + " " + task.swapname);
  row.retry.hidden = !retryable;
  row.remove.textContent = t("delete");
  row.remove.setAttribute("aria-label", t("delete") + " " + task.swapname);
  row.remove.disabled = !!task.removing;
  row.play.hidden = !done;
  row.download.textContent = t("download");
  row.download.setAttribute("aria-label", t("download") + " " + task.swapname);
  row.download.hidden = !done;
  if (done) row.download.href = downloadUrl(task.filepath);
  return row;
}

/** "frame 12 / 40 · 9.5 fps · 0:03 left"; no time left while the server cannot be
 *  reached (it would stand still). withPercent: the list shows the percent here. */
function progressDetail(task, withPercent) {
  const parts = withPercent ? [Math.floor(Number(task.progress) || 0) + " %"] : [];
  if (task.frames_total) parts.push(t("frames", { done: task.frames_done || 0, total: task.frames_total }));
  if (Number(task.fps) > 0) parts.push(t("fps", { fps: Number(task.fps).toFixed(1) }));
  const eta = task.eta_s === null || task.eta_s === undefined ? NaN : Number(task.eta_s);
  if (task.state === "running" && Number.isFinite(eta) && !state.unreachable) parts.push(t("eta", { time: fmtTime(eta) }));
  return parts.join(" · ");
}

export function renderCurrent() {
  const task = state.currentId && state.tasks.get(state.currentId);
  $("current").hidden = !task;
  if (!task) return;
  const active = !TERMINAL.has(task.state);
  const pct = task.state === "finished" ? 100 : Math.max(0, Math.min(100, Number(task.progress) || 0));
  $("current-name").textContent = task.swapname;
  $("current-progress").value = pct;
  $("current-progress").hidden = !active && task.state !== "finished";
  $("current-percent").textContent = active || task.state === "finished" ? Math.floor(pct) + " %" : "";
  $("current-detail").textContent = active ? progressDetail(task, false) : "";
  const problem = taskProblem(task);
  $("current-state").textContent = stateLabel(task) + (problem ? ": " + render(problem) : "");
  $("current-state").className = "state state-" + task.state;
  $("current-cancel").hidden = !active;
  $("current-cancel").disabled = !!task.cancelling;
}

export async function cancelTask(id, button) {
  const task = state.tasks.get(id);
  if (!task) return;
  clearNotices();
  const ok = await confirmAction(msg("confirm_cancel", { name: task.swapname }), msg("cancel_task"));
  if (!ok || TERMINAL.has(task.state)) return;
  if (button) button.disabled = true;
  try {
    await api("POST", "/video/cancel_task", { task_id: id }, { context: { 409: "err_task_done" } });
    // The worker stops shortly; the final state arrives over the socket (or polling).
    if (!TERMINAL.has(task.state)) task.cancelling = true;
    if (!state.wsLive) startPolling();
  } catch (e) {
    if (!e.handled) showError(e.msg, id === state.currentId ? "current-error" : "tasks-error");
  } finally {
    if (button) button.disabled = false;
    renderTask(task);
    if (id === state.currentId) renderCurrent();
  }
}

/** The same inputs and options again, as a new task with a fresh output name. */
export async function retryTask(id, button) {
  const task = state.tasks.get(id);
  if (!task) return;
  clearNotices();
  const swapname = newSwapname();
  if (button) button.disabled = true;
  try {
    const d = await api("POST", "/video/retry_task", { task_id: id, swapname: swapname }, { context: { 404: "err_retry_missing", 409: "err_retry_refused" } });
    const fresh = mergeTask({
      task_id: d.task_id, swapname: d.swapname || swapname, state: "queued", progress: 0, created: new Date().toISOString(),
      videopath: task.videopath, imagepath: task.imagepath, start_s: task.start_s,
    });
    state.currentId = fresh.task_id;
    renderCurrent();
    showInfo(msg("retried", { name: task.swapname, as: fresh.swapname }));
    if (!state.wsLive) startPolling();
    const card = $("current");
    if (card.getBoundingClientRect().top < 0 || card.getBoundingClientRect().bottom > window.innerHeight) card.scrollIntoView({ block: "nearest" });
  } catch (e) {
    if (!e.handled) showError(msg("err_retry", { name: task.swapname, msg: e.msg }), rowError(id));
  } finally {
    if (button) button.disabled = false;
  }
}

/** Remove a task (cancelled first when it runs) and its result, after a confirmation. */
export async function deleteTask(id, button) {
  const task = state.tasks.get(id);
  if (!task) return;
  clearNotices();
  const ok = await confirmAction(msg(TERMINAL.has(task.state) ? "confirm_delete_task" : "confirm_delete_running", { name: task.swapname }), msg("delete_task"));
  if (!ok) return;
  task.removing = true;
  renderTask(task);
  try {
    await api("POST", "/video/delete_task", { task_id: id }, { context: { 404: "err_task_gone" } });
    forgetTask(id);
    showInfo(msg("task_deleted", { name: task.swapname }));
    window.dispatchEvent(new Event("faceswap:stored")); // the library and the storage used
  } catch (e) {
    task.removing = false;
    renderTask(task);
    if (!e.handled) showError(msg("err_delete_task", { name: task.swapname, msg: e.msg }), rowError(id));
  } finally {
    if (button && state.rows.has(id)) button.disabled = false;
  }
}

function rowError(id) {
  const row = state.rows.get(id);
  return row ? row.error.id : "tasks-error";
}

function forgetTask(id) {
  const row = state.rows.get(id);
  if (row) row.li.remove();
  state.rows.delete(id);
  state.tasks.delete(id);
  if (state.currentId === id) { state.currentId = null; renderCurrent(); }
  if (state.playingId === id) stopPlayer();
  $("tasks-empty").hidden = state.tasks.size > 0;
}

// ---------------------------------------------------------------- live progress
export function connectWs() {
  if (!state.user || state.ws) return;
  clearTimeout(state.wsTimer);
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/tasks";
  let ws;
  try {
    ws = new WebSocket(url);
  } catch (e) {
    startPolling();
    return;
  }
  state.ws = ws;
  let reconnect = state.wsRetry > 0;
  ws.onopen = () => {
    state.wsLive = true;
    state.wsRetry = 0;
    state.unreachable = false;
    stopPolling();
    renderConn();
    if (reconnect) loadTasks(); // catch what finished while the socket was down
    reconnect = false;
  };
  ws.onmessage = (ev) => {
    let m = null;
    try { m = JSON.parse(ev.data); } catch (e) { return; }
    if (m && m.task_id) {
      state.wsMessages += 1;
      mergeTask(m);
    }
  };
  ws.onclose = () => {
    if (state.ws !== ws) return;
    state.ws = null;
    state.wsLive = false;
    renderConn();
    if (!state.user) return;
    if (hasActive()) startPolling();
    else probe();
    const delay = Math.min(30000, 1000 * Math.pow(2, state.wsRetry));
    state.wsRetry += 1;
    state.wsTimer = setTimeout(connectWs, delay);
  };
}

/** Without a socket and without active tasks nothing else asks the server: ask whether
 *  it is there, so that the page can say so. */
async function probe() {
  try {
    await api("GET", "/api/session", undefined, { allow401: true });
  } catch (e) { /* state.unreachable tells */ }
  renderConn();
}

export function disconnect() {
  if (state.ws) { const ws = state.ws; state.ws = null; ws.onclose = null; ws.close(); }
  state.wsLive = false;
  clearTimeout(state.wsTimer);
  stopPolling();
}

let wasDown = false;
export function renderConn() {
  const down = !!state.user && state.unreachable;
  // A success notice of before ("task started") is not true news any more under the banner.
  if (down && !wasDown) showInfo(null);
  wasDown = down;
  $("conn-banner").hidden = !down;
  $("conn-banner-text").textContent = down ? t("conn_unreachable") : "";
  let text = "";
  if (state.user && hasActive()) text = down ? t("conn_unreachable") : (state.wsLive ? t("conn_live") : t("conn_polling"));
  $("conn-state").textContent = text;
  $("conn-state").classList.toggle("error", down);
  window.dispatchEvent(new Event("faceswap:conn")); // the Start button depends on it
  if (state.currentId && state.tasks.has(state.currentId)) renderCurrent();
}

export function startPolling() {
  if (state.pollTimer) return;
  state.pollTimer = setInterval(pollOnce, POLL_MS);
  renderConn();
}

export function stopPolling() {
  clearInterval(state.pollTimer);
  state.pollTimer = null;
}

let polling = false;
async function pollOnce() {
  if (polling || !state.user) return;
  if (state.wsLive) { stopPolling(); return; }
  polling = true;
  try {
    const active = [...state.tasks.values()].filter((x) => !TERMINAL.has(x.state));
    if (!active.length) { stopPolling(); return; }
    for (const task of active) {
      try {
        const d = await api("POST", "/video/view_task", { task_id: task.task_id }, { raw: true });
        state.polls += 1;
        mergeTask(d, task.task_id);
      } catch (e) {
        if (e.code >= 400 && e.code < 500 && e.code !== 401 && e.code !== 429) {
          task.problem = e.msg;
          mergeTask({ status: 2, state: "failed" }, task.task_id);
        } else if (e.code === 0) {
          break; // the server is unreachable: renderConn says so; the timer retries
        }
      }
    }
  } finally {
    polling = false;
    renderConn();
  }
}

export function renderTasks() {
  for (const task of state.tasks.values()) renderTask(task);
  renderCurrent();
  renderConn();
}

export function clearTasks() {
  state.tasksBefore = null;
  state.tasksMore = false;
  $("tasks-more").hidden = true;
  state.tasks.clear();
  state.rows.clear();
  $("tasks").replaceChildren();
  state.currentId = null;
  $("current").hidden = true;
}
