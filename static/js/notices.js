/* What the page tells the user: errors next to the control that caused them (or in the
 * banner at the top when nothing on the page caused them), and one success notice.
 * Notices are kept as messages, not text, so that a language switch shows them again
 * in the new language; each new action clears those of the one before. */
import { $, render, reveal } from "./core.js";

const shown = new Map(); // element id -> message
let info = null;

/** Show `message` in the error place `place` (the id of an element with the class
 *  "field-error"), or in the banner when place is absent. */
export function showError(message, place, quiet) {
  const id = place && $(place) ? place : "msg";
  shown.set(id, message);
  paint(id);
  // quiet: a background load failed; the user is looking elsewhere, don't move the page
  if (!quiet) reveal(id === "msg" ? $("msg") : $(id));
}

export function showInfo(message) {
  info = message || null;
  $("notice").textContent = info ? render(info) : "";
}

/** Forget the notices of the last action (called at the start of every action). */
export function clearNotices() {
  for (const id of [...shown.keys()]) clearError(id);
  showInfo(null);
}

export function clearError(id) {
  shown.delete(id);
  paint(id);
}

function paint(id) {
  const message = shown.get(id);
  const box = $(id);
  if (!box) return;
  const text = id === "msg" ? $("msg-text") : box;
  text.textContent = message ? render(message) : "";
  box.hidden = !message;
}

/** Paint every notice again in the page's (new) language. */
export function renderNotices() {
  for (const id of shown.keys()) paint(id);
  showInfo(info);
}
