/* The options card: the output name, the Start button (enabled exactly when a swap can
 * start) and starting a task. */
import { $, state, slots, t, msg, reveal, SWAPNAME_RE } from "./core.js";
import { api } from "./api.js";
import { showError, showInfo, clearNotices } from "./notices.js";
import { mergeTask, renderCurrent, startPolling } from "./tasks.js";
import { trimBlocks, renderPreviewButton } from "./preview.js";
import { renderFindButton } from "./faces.js";

/** Refusal codes that say which file cannot be used: Start stays off until it is replaced. */
const FILE_CODES = {
  face: ["no_face_in_photo", "photo_face_too_small", "photo_face_too_turned", "photo_too_large", "not_an_image", "face_video_too_long"],
  video: ["too_long", "not_a_video", "video_too_large", "too_many_samples", "bad_timestamps", "no_face_in_target"],
};

/** A default output name no task of this page has: swap_YYYYMMDD_HHMMSS, then _2, _3...
 *  when several are made within one second. */
export function newSwapname() {
  const d = new Date();
  const p = (x) => String(x).padStart(2, "0");
  const base = "swap_" + d.getFullYear() + p(d.getMonth() + 1) + p(d.getDate()) + "_" + p(d.getHours()) + p(d.getMinutes()) + p(d.getSeconds());
  const taken = new Set(state.usedNames);
  for (const task of state.tasks.values()) taken.add(task.swapname);
  let name = base;
  for (let i = 2; taken.has(name); i++) name = base + "_" + i;
  state.usedNames.add(name);
  return name;
}

export function fillDefaultName() {
  const name = newSwapname();
  $("swapname").value = name;
  state.defaultName = name;
}

export function updateStart() {
  const name = $("swapname").value.trim();
  let hint = null;
  if (state.unreachable) hint = "hint_unreachable";
  else if (slots.face.busy || slots.video.busy) hint = "hint_uploading";
  else if (!slots.face.filepath) hint = slots.face.refused ? "hint_face_refused" : "hint_need_face";
  else if (!slots.video.filepath) hint = slots.video.refused ? "hint_video_refused" : "hint_need_video";
  else if (trimBlocks()) hint = "hint_trim";
  else if (!SWAPNAME_RE.test(name)) hint = "err_swapname";
  const ok = !!state.user && !hint && !state.submitting;
  $("start").disabled = !ok;
  // The photo's advice is said once more where the user is about to spend the time.
  const warned = !$("face-warnings").hidden;
  $("start-hint").textContent = hint ? t(hint) : (ok ? t(warned ? "hint_ready_warned" : "hint_ready") : "");
  $("swapname").setAttribute("aria-invalid", name && !SWAPNAME_RE.test(name) ? "true" : "false");
  for (const slot of Object.values(slots)) {
    $(slot.name + "-abort").disabled = !slot.busy;
    $(slot.name + "-file").disabled = slot.busy;
    $(slot.name + "-drop").classList.toggle("disabled", slot.busy);
    $(slot.name + "-from-library").disabled = slot.busy;
  }
  renderFindButton();
  renderPreviewButton();
}

/** The face: one photo, several photos of the same person (a list), or a face video. */
function imagepath() {
  const extra = slots.face.fileKind === "image" ? state.extraFaces.map((x) => x.filepath).filter((p) => p !== slots.face.filepath) : [];
  return extra.length ? [slots.face.filepath, ...extra] : slots.face.filepath;
}

/** The fields of /video/faceswap (and /video/preview) the page's controls set; the new
 *  ones (API version 2) only when used, so an older server sees the old request. */
export function swapOptions() {
  const body = {
    imagepath: imagepath(),
    videopath: slots.video.filepath,
    many_faces: $("many-faces").checked,
    keep_mouth: $("keep-mouth").checked,
    quality: $("quality").value,
  };
  if (state.targetFace && !body.many_faces) body.target_face = state.targetFace;
  if (state.sourceFace && typeof body.imagepath === "string") body.source_face = state.sourceFace;
  if (state.trim) { body.start_s = state.trim.start; body.end_s = state.trim.end; }
  return body;
}

export async function onStart(ev) {
  ev.preventDefault();
  clearNotices();
  updateStart();
  if ($("start").disabled) return;
  const swapname = $("swapname").value.trim();
  state.submitting = true;
  updateStart();
  try {
    const body = { ...swapOptions(), swapname: swapname };
    const d = await api("POST", "/video/faceswap", body, { context: { 400: "err_start_refused", 409: "err_name_taken" } });
    state.usedNames.add(swapname);
    const task = mergeTask({
      task_id: d.task_id, swapname: swapname, state: "queued", progress: 0, created: new Date().toISOString(),
      videopath: body.videopath, imagepath: body.imagepath, start_s: body.start_s, warnings: d.warnings,
    });
    state.currentId = task.task_id;
    renderCurrent();
    reveal($("current"));
    showInfo(msg("started", { name: swapname }));
    fillDefaultName();
    if (!state.wsLive) startPolling();
  } catch (e) {
    if (!e.handled) {
      showError(msg("err_start", { msg: e.msg }), "start-error");
      const code = e.data && e.data.code;
      for (const [name, codes] of Object.entries(FILE_CODES)) {
        if (name === "video" && code === "too_long" && state.trim) continue; // the segment is shown in error
        if (codes.includes(code)) window.dispatchEvent(new CustomEvent("faceswap:refused", { detail: { slot: name, message: e.msg } }));
      }
      // A default name someone else took meanwhile: offer a fresh one.
      if (e.code === 409 && swapname === state.defaultName) fillDefaultName();
    }
  } finally {
    state.submitting = false;
    updateStart();
  }
}
