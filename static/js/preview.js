/* Before the swap: a trim control when the video is longer than the user's limit (the
 * swap then uses only that segment: start_s / end_s), and a preview of one frame at a
 * moment picked on a scrubber (POST /video/preview), shown next to the original frame
 * with the server's warnings. */
import { $, state, slots, t, msg, render, el, reveal, warningMessage, fmtTime, fmtTimeTenths, fmtLimit } from "./core.js";
import { api } from "./api.js";
import { showError, clearError, clearNotices } from "./notices.js";
import { thumbUrl } from "./media.js";
import { updateStart, swapOptions } from "./start.js";

// ---------------------------------------------------------------- trim
let trimInfo = null; // {duration, max}

/** The video is longer than the user may swap: offer its first `max` seconds, editable. */
export function offerTrim(duration, max) {
  trimInfo = { duration: duration, max: max };
  const end = Math.floor(Math.min(duration, max) * 10) / 10;
  $("trim-start").value = "0";
  $("trim-end").value = String(end);
  for (const id of ["trim-start", "trim-end"]) $(id).max = String(Math.floor(duration * 10) / 10);
  $("trim").hidden = false;
  readTrim();
  renderTrim();
}

export function clearTrim() {
  trimInfo = null;
  state.trim = null;
  $("trim").hidden = true;
  clearError("trim-error");
  renderScrub();
}

/** state.trim from the two fields; null with an error shown when they cannot work. */
function readTrim() {
  if (!trimInfo) { state.trim = null; return; }
  const start = Number($("trim-start").value);
  const end = Number($("trim-end").value);
  let problem = null;
  if (!Number.isFinite(start) || !Number.isFinite(end) || $("trim-start").value === "" || $("trim-end").value === "") problem = msg("err_trim_number");
  else if (start < 0 || end > trimInfo.duration + 0.05) problem = msg("err_trim_range", { dur: fmtTime(trimInfo.duration) });
  else if (end - start < 0.5) problem = msg("err_trim_order");
  else if (end - start > trimInfo.max + 0.05) problem = msg("err_trim_long", { max: fmtLimit(trimInfo.max) });
  state.trim = problem ? null : { start: start, end: end };
  state.trimProblem = problem;
  for (const id of ["trim-start", "trim-end"]) $(id).setAttribute("aria-invalid", problem ? "true" : "false");
  if (problem) showError(problem, "trim-error");
  else clearError("trim-error");
}

export function renderTrim() {
  if (!trimInfo) return;
  $("trim-hint").textContent = t("trim_hint", { dur: fmtTime(trimInfo.duration), max: fmtLimit(trimInfo.max) });
  $("trim-info").textContent = state.trim
    ? t("trim_info", { from: fmtTimeTenths(state.trim.start), to: fmtTimeTenths(state.trim.end), len: fmtTimeTenths(state.trim.end - state.trim.start) }) : "";
  renderScrub();
}

/** A trim is needed and not valid: Start and the preview wait for it. */
export function trimBlocks() {
  return !!trimInfo && !state.trim;
}

// ---------------------------------------------------------------- scrubber
function videoDuration() {
  const d = Number($("video-preview").dataset.duration);
  return Number.isFinite(d) ? d : 0;
}

function renderScrub() {
  const photo = slots.video.fileKind === "image";
  $("scrub-row").hidden = photo;
  const lo = state.trim ? state.trim.start : 0;
  const hi = state.trim ? state.trim.end : videoDuration();
  const scrub = $("scrub");
  scrub.min = String(lo);
  scrub.max = String(Math.max(lo, Math.floor(hi * 10) / 10));
  const v = Math.min(Math.max(Number(scrub.value) || 0, lo), Number(scrub.max));
  scrub.value = String(v);
  const label = fmtTimeTenths(v);
  $("scrub-time").textContent = label;
  scrub.setAttribute("aria-valuetext", label);
  renderPreviewButton();
}

function renderPreviewButton() {
  const ready = !!state.user && !!slots.face.filepath && !!slots.video.filepath && !slots.face.busy && !slots.video.busy && !trimBlocks() && !state.unreachable;
  $("preview-btn").disabled = !ready || previewBusy;
  $("preview-state").textContent = previewBusy ? t("preview_busy") : (ready ? "" : t("preview_need_files"));
}

// ---------------------------------------------------------------- preview
let previewBusy = false;
let previewAnswer = null; // the last answer, kept for a language switch
let previewSeq = 0;

export function resetPreview() {
  previewSeq += 1;
  previewBusy = false;
  previewAnswer = null;
  $("preview-out").hidden = true;
  $("preview-original").removeAttribute("src");
  $("preview-result").removeAttribute("src");
  $("preview-warnings").hidden = true;
  $("preview-warnings").replaceChildren();
  clearError("preview-error");
  renderScrub();
}

export function renderPreview() {
  renderScrub();
  renderTrim();
  const a = previewAnswer;
  const list = $("preview-warnings");
  list.replaceChildren(...(a && a.warnings ? a.warnings : []).map((w) => el("li", "", render(warningMessage(w)))));
  list.hidden = !list.children.length;
  if (a) {
    $("preview-original").alt = t("preview_original_alt", { time: fmtTimeTenths(a.at) });
    $("preview-result").alt = t("preview_result_alt", { time: fmtTimeTenths(a.at) });
  }
}

async function onPreview() {
  clearNotices();
  renderPreviewButton();
  if ($("preview-btn").disabled) return;
  const at = slots.video.fileKind === "image" ? 0 : Number($("scrub").value) || 0;
  const body = { ...swapOptions(), at_s: at };
  // The preview route takes one photo: with several, the first (the main one) shows it.
  if (Array.isArray(body.imagepath)) body.imagepath = body.imagepath[0];
  delete body.start_s; // at_s is a moment of the whole video
  delete body.end_s;
  const seq = ++previewSeq;
  previewBusy = true;
  renderPreviewButton();
  try {
    const d = await api("POST", "/video/preview", body, { context: { 404: "err_preview_missing" } });
    if (seq !== previewSeq) return;
    previewAnswer = { at: at, warnings: Array.isArray(d.warnings) ? d.warnings : [] };
    $("preview-original").src = thumbUrl(d.original);
    $("preview-result").src = thumbUrl(d.preview);
    $("preview-out").hidden = false;
    renderPreview();
    // Brought into view once the pictures have their size (on a phone it is below).
    await Promise.all(["preview-original", "preview-result"].map((id) => $(id).decode().catch(() => {})));
    if (seq === previewSeq) reveal($("preview-out"));
  } catch (e) {
    if (seq === previewSeq && !e.handled) showError(msg("err_preview_failed", { msg: e.msg }), "preview-error");
  } finally {
    if (seq === previewSeq) {
      previewBusy = false;
      renderPreviewButton();
    }
  }
}

export function bindPreview() {
  for (const id of ["trim-start", "trim-end"]) {
    $(id).addEventListener("input", () => { readTrim(); renderTrim(); updateStart(); });
  }
  $("scrub").addEventListener("input", () => {
    renderScrub();
    const v = $("video-preview");
    if (v.getAttribute("src") && !v.hidden) {
      try { v.currentTime = Number($("scrub").value) || 0; } catch (e) { /* not seekable yet */ }
    }
  });
  $("preview-btn").addEventListener("click", onPreview);
  window.addEventListener("faceswap:conn", renderPreviewButton);
  window.addEventListener("faceswap:files", renderPreviewButton);
}

export { renderPreviewButton };
