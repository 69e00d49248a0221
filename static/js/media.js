/* Media URLs and the result player. */
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

export function play(task, show) {
  if (!task || !task.filepath) return;
  state.playingId = task.task_id;
  const v = $("player");
  $("player-card").hidden = false;
  $("player-name").textContent = task.swapname;
  v.src = playUrl(task.filepath);
  v.load();
  $("player-download").href = downloadUrl(task.filepath);
  $("player-download").setAttribute("download", task.filepath.split("/").pop());
  if (show) reveal($("player-card"));
}

export function stopPlayer() {
  state.playingId = null;
  $("player-card").hidden = true;
  $("player").removeAttribute("src");
  $("player").load();
}

export function onPlayerError() {
  const v = $("player");
  if (!v.getAttribute("src")) return;
  showError(msg("err_play", { code: v.error ? v.error.code : 0 }), "player-error");
}
