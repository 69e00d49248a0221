/* Media URLs and the result player, with the before/after comparison: the original and
 * the swap side by side or under a slider, the original following the result's clock
 * (play, pause, seek, rate) so that both show the same moment. */
import { $, state, msg, reveal } from "./core.js";
import { showError } from "./notices.js";

export function mediaUrl(filepath) {
  return "/static/media/" + filepath.split("/").map(encodeURIComponent).join("/");
}

export function downloadUrl(filepath) {
  return mediaUrl(filepath) + "?download=1";
}

export function playUrl(filepath) {
  return "/video/test_resp/?path=" + encodeURIComponent("/" + filepath);
}

/** A thumbnail as the server names it: a media URL, or (tolerated) a filepath. */
export function thumbUrl(thumbnail) {
  if (!thumbnail) return "";
  const s = String(thumbnail);
  return s.startsWith("/") || s.startsWith("http") || s.startsWith("data:") ? s : mediaUrl(s);
}

/** A photo result or a photo target: the server names them by extension. */
export function isImagePath(filepath) {
  return /\.(jpe?g|png|webp|bmp)$/i.test(String(filepath || ""));
}

/** Where the result starts in the original (a trimmed task starts at start_s). */
function offsetOf(task) {
  const v = Number(task && task.start_s);
  return Number.isFinite(v) && v > 0 ? v : 0;
}

export function play(task, show) {
  if (!task || !task.filepath) return;
  state.playingId = task.task_id;
  const photo = isImagePath(task.filepath);
  const v = $("player");
  const img = $("player-image");
  $("player-card").hidden = false;
  $("player-name").textContent = task.swapname;
  if (photo) {
    v.pause();
    v.removeAttribute("src");
    v.load();
    v.hidden = true;
    img.src = mediaUrl(task.filepath);
    img.alt = task.swapname;
    img.hidden = false;
  } else {
    img.hidden = true;
    img.removeAttribute("src");
    v.hidden = false;
    v.src = playUrl(task.filepath);
    v.load();
  }
  $("player-download").href = downloadUrl(task.filepath);
  $("player-download").setAttribute("download", task.filepath.split("/").pop());
  setOriginal(task);
  if (show) reveal($("player-card"));
}

/** The original next to the result: the task's target (its videopath). */
function setOriginal(task) {
  const ov = $("player-original");
  const oi = $("player-original-image");
  const source = task.videopath;
  compare.offset = offsetOf(task);
  compare.photo = isImagePath(task.filepath);
  $("compare-mode").disabled = !source;
  if (!source) $("compare-mode").value = "off";
  ov.pause();
  ov.removeAttribute("src");
  oi.removeAttribute("src");
  if (source && compare.photo) {
    oi.src = mediaUrl(source);
    oi.alt = task.swapname;
  } else if (source) {
    ov.src = playUrl(source);
    ov.load();
  }
  renderCompare();
}

export function stopPlayer() {
  state.playingId = null;
  $("player-card").hidden = true;
  for (const id of ["player", "player-original"]) {
    $(id).pause();
    $(id).removeAttribute("src");
    $(id).load();
  }
  $("player-image").removeAttribute("src");
  $("player-original-image").removeAttribute("src");
}

export function onPlayerError() {
  const v = $("player");
  if (!v.getAttribute("src")) return;
  showError(msg("err_play", { code: v.error ? v.error.code : 0 }), "player-error");
}

// ---------------------------------------------------------------- comparison
const compare = { offset: 0, photo: false };

export function renderCompare() {
  const mode = $("compare-mode").disabled ? "off" : $("compare-mode").value;
  const stage = $("compare-stage");
  stage.dataset.mode = mode;
  const on = mode !== "off";
  $("player-original").hidden = !on || compare.photo;
  $("player-original-image").hidden = !on || !compare.photo;
  $("compare-slider-row").hidden = mode !== "slider";
  stage.classList.toggle("photo", compare.photo);
  setSlider();
  if (on && !compare.photo) syncOriginal(true);
  if (!on) $("player-original").pause();
}

function setSlider() {
  const pct = Number($("compare-slider").value) || 0;
  // The original covers the result left of the slider; the result's own controls (the
  // bottom strip) stay uncovered.
  const box = document.querySelector(".compare-original");
  const slider = $("compare-stage").dataset.mode === "slider";
  box.style.clipPath = slider ? "inset(0 " + (100 - pct) + "% " + (compare.photo ? "0" : "3.2rem") + " 0)" : "";
  $("compare-slider").setAttribute("aria-valuetext", pct + " %");
}

/** Bring the original to the result's moment; `hard`: also its play/pause state. */
function syncOriginal(hard) {
  const v = $("player");
  const o = $("player-original");
  if (!o.getAttribute("src") || $("compare-stage").dataset.mode === "off") return;
  const want = v.currentTime + compare.offset;
  if (hard || Math.abs(o.currentTime - want) > 0.15) {
    try { o.currentTime = want; } catch (e) { /* not seekable yet */ }
  }
  o.playbackRate = v.playbackRate;
  if (hard || v.paused !== o.paused) {
    if (v.paused) o.pause();
    else o.play().catch(() => {});
  }
}

export function bindCompare() {
  const v = $("player");
  $("compare-mode").addEventListener("change", renderCompare);
  $("compare-slider").addEventListener("input", setSlider);
  for (const ev of ["play", "pause", "seeked", "ratechange"]) v.addEventListener(ev, () => syncOriginal(true));
  v.addEventListener("timeupdate", () => syncOriginal(false));
  $("player-original").addEventListener("loadedmetadata", () => syncOriginal(true));
}
