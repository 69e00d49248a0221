/* "My files": the user's uploads and results with thumbnails (GET /video/files), reused
 * as the face, as more photos of the same person or as the target without uploading
 * them again; deleted after a confirmation (POST /video/delete_file; a file a task still
 * uses is refused with 409 in_use, shown in its row); the storage used of the quota. */
import { $, state, slots, t, msg, el, fmtBytes, fmtTime, baseName, MAX_FACES, FACE_VIDEO_SECONDS } from "./core.js";
import { api } from "./api.js";
import { showError, showInfo, clearNotices } from "./notices.js";
import { confirmAction } from "./dialog.js";
import { thumbUrl, mediaUrl, isImagePath } from "./media.js";
import { useServerFile, resetSlot, saveUploads } from "./uploads.js";
import { updateStart } from "./start.js";
import { loadTasks } from "./tasks.js";

const rows = new Map(); // filepath -> row elements

export function isResult(f) {
  return f.result === true || f.origin === "result" || f.kind === "result" || !!f.task_id;
}

function fileName(f) {
  return f.filename || f.name || f.original_name || baseName(f.filepath);
}

function fileKind(f) {
  if (f.kind === "image" || f.kind === "video") return f.kind;
  return isImagePath(f.filepath) ? "image" : "video";
}

export async function loadFiles() {
  if (!state.user) return;
  const kind = $("library-kind").value;
  try {
    const d = await api("GET", "/video/files" + (kind ? "?kind=" + encodeURIComponent(kind) : ""), undefined,
      { context: { 404: "err_library_missing" } });
    showLibrary(true);
    state.files = Array.isArray(d.files) ? d.files : [];
    if (typeof d.usage_bytes === "number") setUsage(d.usage_bytes, d.quota_bytes);
    renderLibrary();
  } catch (e) {
    // A 404 to the list itself: this server has no library (an older version): the
    // card goes, rather than an error about something the user did not ask for.
    if (e.code === 404) { showLibrary(false); return; }
    if (state.user && !e.handled) showError(e.msg, "library-error", true);
  }
}

function showLibrary(on) {
  for (const id of ["library-card", "face-from-library", "video-from-library"]) $(id).hidden = !on;
}

/** The storage used, from /api/session (or the files' answer). */
export function setUsage(used, quota) {
  const u = Number(used);
  state.usage = Number.isFinite(u) ? { used: u, quota: Number(quota) || 0 } : null;
  renderStorage();
}

export function renderStorage() {
  const u = state.usage;
  $("storage").hidden = !u;
  if (!u) return;
  const pct = u.quota ? Math.min(100, (u.used * 100) / u.quota) : 0;
  $("storage-text").textContent = u.quota
    ? t("storage_used", { used: fmtBytes(u.used), quota: fmtBytes(u.quota), pct: pct < 1 && u.used > 0 ? "<1" : String(Math.round(pct)) })
    : t("storage_used_only", { used: fmtBytes(u.used) });
  $("storage-meter").value = pct;
  $("storage-meter").hidden = !u.quota;
  $("storage").classList.toggle("full", pct >= 90);
}

function meta(f) {
  const parts = [t(isResult(f) ? "kind_result" : (fileKind(f) === "image" ? "kind_image" : "kind_video"))];
  if (Number(f.size) > 0) parts.push(fmtBytes(Number(f.size)));
  if (f.width && f.height) parts.push(f.width + "×" + f.height);
  if (Number(f.duration) > 0) parts.push(fmtTime(Number(f.duration)));
  return parts.join(" · ");
}

function button(cls, key, name, fn) {
  const b = el("button", "small " + cls, t(key));
  b.type = "button";
  b.setAttribute("aria-label", t(key) + " " + name);
  b.addEventListener("click", fn);
  return b;
}

export function renderLibrary() {
  const ul = $("library");
  rows.clear();
  ul.replaceChildren();
  const inUse = new Set([slots.face.filepath, slots.video.filepath, ...state.extraFaces.map((x) => x.filepath)]);
  state.files.forEach((f, i) => {
    const name = fileName(f);
    const kind = fileKind(f);
    const li = el("li", "file");
    li.dataset.filepath = f.filepath;
    const pic = el("div", "file-pic");
    if (f.thumbnail) {
      const img = el("img");
      img.src = thumbUrl(f.thumbnail);
      img.alt = t("thumb_of", { name: name });
      img.loading = "lazy";
      pic.append(img);
    } else {
      pic.append(el("span", "file-pic-none", t(kind === "image" ? "kind_image" : "kind_video")));
    }
    const body = el("div", "file-body");
    body.append(el("p", "file-name", name), el("p", "file-meta2", meta(f)));
    if (inUse.has(f.filepath)) body.append(el("p", "file-chosen", t("file_chosen")));
    const actions = el("div", "file-actions");
    const short = kind === "image" || !(Number(f.duration) > FACE_VIDEO_SECONDS + 0.5);
    if (short && !isResult(f)) actions.append(button("secondary use-face", "use_as_face", name, () => useAs("face", f)));
    const faceIsPhoto = slots.face.filepath && slots.face.fileKind === "image";
    if (kind === "image" && faceIsPhoto && !inUse.has(f.filepath) && !isResult(f)) {
      const more = button("secondary add-face", "add_face", name, () => addFace(f));
      more.disabled = state.extraFaces.length >= MAX_FACES - 1;
      actions.append(more);
    }
    actions.append(button("secondary use-video", "use_as_target", name, () => useAs("video", f)));
    const open = el("a", "button small secondary file-open", t("open_file"));
    open.href = mediaUrl(f.filepath);
    open.target = "_blank";
    open.rel = "noopener";
    open.setAttribute("aria-label", t("open_file") + " " + name);
    actions.append(open);
    actions.append(button("danger file-delete", "delete", name, () => deleteFile(f, li)));
    const err = el("p", "field-error");
    err.id = "file-error-" + i;
    err.setAttribute("role", "alert");
    err.hidden = true;
    li.append(pic, body, actions, err);
    rows.set(f.filepath, { li: li, err: err.id });
    ul.append(li);
  });
  $("library-empty").hidden = state.files.length > 0;
  renderStorage();
}

function useAs(slotName, f) {
  const slot = slots[slotName];
  if (slot.busy) return;
  if (slotName === "face") removeExtra(f.filepath, true);
  useServerFile(slot, { ...f, kind: fileKind(f), filename: fileName(f) }, "chosen_from_library");
  showInfo(msg(slotName === "face" ? "used_as_face" : "used_as_target", { name: fileName(f) }));
  renderLibrary();
  const card = $(slotName + "-title");
  if (card) card.scrollIntoView({ block: "nearest" });
}

function addFace(f) {
  clearNotices();
  if (state.extraFaces.length >= MAX_FACES - 1 || state.extraFaces.some((x) => x.filepath === f.filepath)) return;
  state.extraFaces.push({ filepath: f.filepath, filename: fileName(f), thumbnail: f.thumbnail || "" });
  saveUploads();
  renderExtras();
  renderLibrary();
  showInfo(msg("face_added", { name: fileName(f), n: state.extraFaces.length + 1, max: MAX_FACES }));
}

function removeExtra(filepath, quiet) {
  const before = state.extraFaces.length;
  state.extraFaces = state.extraFaces.filter((x) => x.filepath !== filepath);
  if (state.extraFaces.length !== before) {
    saveUploads();
    renderExtras();
    if (!quiet) renderLibrary();
  }
}

/** The other photos of the same person, under the face photo, each removable. */
export function renderExtras() {
  const list = $("face-extras");
  // More photos only go with a photo as the face (not with a face video).
  if (slots.face.filepath && slots.face.fileKind !== "image" && state.extraFaces.length) {
    state.extraFaces = [];
    saveUploads();
  }
  list.replaceChildren();
  for (const x of state.extraFaces) {
    const li = el("li", "chip");
    if (x.thumbnail) {
      const img = el("img");
      img.src = thumbUrl(x.thumbnail);
      img.alt = "";
      li.append(img);
    }
    li.append(el("span", "chip-name", x.filename));
    const rm = el("button", "small secondary chip-remove", "×");
    rm.type = "button";
    rm.setAttribute("aria-label", t("remove_face", { name: x.filename }));
    rm.addEventListener("click", () => { clearNotices(); removeExtra(x.filepath); });
    li.append(rm);
    list.append(li);
  }
  $("face-extras-box").hidden = !state.extraFaces.length;
  $("face-extras-title").textContent = t("extras_title", { n: state.extraFaces.length + 1, max: MAX_FACES });
  updateStart();
}

async function deleteFile(f, li) {
  clearNotices();
  const name = fileName(f);
  const ok = await confirmAction(msg(isResult(f) ? "confirm_delete_result" : "confirm_delete_file", { name: name }), msg("delete"));
  if (!ok) return;
  const row = rows.get(f.filepath);
  for (const b of li.querySelectorAll("button")) b.disabled = true;
  try {
    await api("POST", "/video/delete_file", { filepath: f.filepath }, { context: { 409: "code_in_use" } });
    for (const slot of Object.values(slots)) {
      if (slot.filepath === f.filepath) { resetSlot(slot); saveUploads(); }
    }
    removeExtra(f.filepath, true);
    state.files = state.files.filter((x) => x.filepath !== f.filepath);
    renderLibrary();
    showInfo(msg("file_deleted", { name: name }));
    window.dispatchEvent(new Event("faceswap:session")); // storage used
    if (isResult(f)) loadTasks(); // its task is "deleted" now
    updateStart();
  } catch (e) {
    for (const b of li.querySelectorAll("button")) b.disabled = false;
    if (!e.handled) showError(msg("err_delete_file", { name: name, msg: e.msg }), row ? row.err : "library-error");
  }
}

export function bindLibrary() {
  $("library-refresh").addEventListener("click", () => { clearNotices(); loadFiles(); });
  $("library-kind").addEventListener("change", () => { clearNotices(); loadFiles(); });
  for (const name of ["face", "video"]) {
    $(name + "-from-library").addEventListener("click", () => {
      clearNotices();
      const card = $("library-card");
      card.scrollIntoView({ block: "start" });
      card.focus();
      loadFiles();
    });
  }
  window.addEventListener("faceswap:files", () => { if (state.files.length) renderLibrary(); });
}

export function clearLibrary() {
  state.files = [];
  state.usage = null;
  state.extraFaces = [];
  rows.clear();
  $("library").replaceChildren();
  renderExtras();
  renderStorage();
}
