/* Shared state, constants, the language and the formatting helpers of the page. */
import { I18N } from "../i18n.js";

export const MB = 1024 * 1024;
export const POLL_MS = 1500;
export const PAGE_SIZE = 20;
export const USERTYPES = [1, 100, 2000, 3000];
export const ADMIN = 3000;
/** States in which a task does not change any more: no progress bar, no Cancel, no polling. */
export const TERMINAL = new Set(["finished", "failed", "cancelled", "expired", "deleted"]);
export const KNOWN_STATES = new Set(["queued", "running", ...TERMINAL]);

export const $ = (id) => document.getElementById(id);

export function numberSetting(key, fallback) {
  try {
    const raw = window.localStorage.getItem(key);
    const v = Number(raw);
    return Number.isFinite(v) && v > 0 ? v : (raw === "0" ? 0 : fallback);
  } catch (e) {
    return fallback;
  }
}

// Files at or above this size go over tus (resumable); smaller ones in one multipart
// request. Both knobs can be overridden in localStorage for testing.
export const TUS_THRESHOLD = numberSetting("faceswap.tus_threshold", 20 * MB);
export const TUS_CHUNK = numberSetting("faceswap.tus_chunk", 8 * MB);

export const state = {
  lang: pickLang(),
  user: null,
  limits: null,
  xsrf: "",
  submitting: false,
  tasks: new Map(), // task_id -> task
  rows: new Map(), // task_id -> row elements
  currentId: null,
  playingId: null,
  ws: null,
  wsLive: false,
  wsRetry: 0,
  wsMessages: 0, // progress messages received over the WebSocket
  polls: 0, // view_task answers received by the fallback polling
  unreachable: false, // the last request could not reach the server at all
  wsTimer: null,
  pollTimer: null,
  adminPage: 1,
  adminTotal: 0,
  adminKeywords: "",
  adminRows: [],
  usedNames: new Set(), // output names given out by this page (defaults and started tasks)
  usage: null, // {used, quota} bytes of the user's storage (API version 2)
  files: [], // the library: the user's uploads and results (GET /video/files)
  extraFaces: [], // more photos of the same person: [{filepath, filename, thumbnail}]
  targetFace: null, // face_id of the person to swap in the video (POST /video/faces)
  sourceFace: null, // face_id of the face to use in a group photo
  trim: null, // {start, end} seconds when the video is longer than the user's limit
  tasksBefore: null, // task_id to ask for the next (older) page of the task list
  tasksMore: false,
};

/** At most this many photos of one person make the face (API: imagepath as a list). */
export const MAX_FACES = 10;
/** The longest face video the server takes as the source (API: 30 s). */
export const FACE_VIDEO_SECONDS = 30;
// The task list comes in pages of this many (localStorage can lower it for testing).
export const TASK_PAGE = numberSetting("faceswap.task_page", 20);

export const slots = {
  // kind: what the slot usually holds; fileKind: what it holds now (a face video in the
  // face slot, a photo as the target in the video slot).
  face: { kind: "image", fileKind: "image", name: "face", filepath: null, filename: "", busy: false, abort: null, url: null },
  video: { kind: "video", fileKind: "video", name: "video", filepath: null, filename: "", busy: false, abort: null, url: null },
};

// ---------------------------------------------------------------- language
export function pickLang() {
  try {
    const saved = window.localStorage.getItem("faceswap.lang");
    if (saved === "zh" || saved === "en") return saved;
  } catch (e) { /* storage disabled */ }
  const langs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || ""];
  for (const l of langs) {
    const x = String(l).toLowerCase();
    if (x.startsWith("zh")) return "zh";
    if (x.startsWith("en")) return "en";
  }
  return "zh";
}

export function hasText(key) {
  return key in I18N.zh;
}

/** The text of `key` in the page's language, with {name} placeholders filled. A value
 *  may itself be a message ({key, vars}), rendered in the same language. A placeholder
 *  without a value is dropped rather than shown raw. */
export function t(key, vars) {
  const table = I18N[state.lang] || I18N.zh;
  const s = key in table ? table[key] : (key in I18N.zh ? I18N.zh[key] : key);
  return s.replace(/\{(\w+)\}/g, (m, k) => {
    if (!vars || !(k in vars) || vars[k] === undefined || vars[k] === null) return "";
    return render(vars[k]);
  });
}

/** A message is kept as {key, vars} (never as text) so that it can be shown again in
 *  the other language after a switch. */
export function msg(key, vars) {
  return { key: key, vars: vars };
}

export function render(value) {
  if (value && typeof value === "object" && typeof value.key === "string") return t(value.key, value.vars);
  return String(value);
}

// ---------------------------------------------------------------- formatting
export function fmtBytes(n) {
  if (!Number.isFinite(n)) return "?";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? String(Math.round(n)) : n.toFixed(n < 10 ? 1 : 0)) + " " + units[i];
}

/** The one way the page writes a duration or a time left: m:ss (h:mm:ss), whole seconds
 *  cut off like a video player's clock does, so 3.9 s reads 0:03 everywhere. */
export function fmtTime(sec) {
  if (!Number.isFinite(sec) || sec < 0) return "?";
  sec = Math.floor(sec + 1e-6);
  const h = Math.floor(sec / 3600), m = Math.floor((sec % 3600) / 60), s = sec % 60;
  const pad = (x) => String(x).padStart(2, "0");
  return h ? h + ":" + pad(m) + ":" + pad(s) : m + ":" + pad(s);
}

/** A moment or a short length to a tenth of a second (m:ss.t), cut like fmtTime so the
 *  two agree on the whole seconds: for the trim and the scrubber, where 0:00 – 0:01
 *  would not tell 0.5 s from 1.4 s. */
export function fmtTimeTenths(sec) {
  if (!Number.isFinite(sec) || sec < 0) return "?";
  const tenths = Math.floor(sec * 10 + 1e-6);
  return fmtTime(Math.floor(tenths / 10)) + "." + (tenths % 10);
}

/** A length limit in words ("60 seconds", "5 minutes"), which m:ss cannot say unambiguously. */
export function fmtLimit(sec) {
  sec = Math.floor(Number(sec) || 0);
  if (sec >= 3600 && sec % 3600 === 0) return t("n_hours", { n: sec / 3600 });
  if (sec >= 120 && sec % 60 === 0) return t("n_minutes", { n: sec / 60 });
  return t(sec === 1 ? "n_second" : "n_seconds", { n: sec });
}

export function fmtDate(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(d.getTime())) return String(iso);
  return d.toLocaleString(state.lang === "zh" ? "zh-CN" : "en");
}

/** A server warning ({code, msg}) in the page's language; its English msg is never shown. */
export function warningMessage(w) {
  const code = w && typeof w.code === "string" ? w.code : "";
  if (hasText("warn_" + code)) return msg("warn_" + code);
  return msg(hasText("code_" + code) ? "code_" + code : "warn_other"); // a refusal as a warning
}

export function typeName(n) {
  return USERTYPES.includes(n) ? t("type_" + n) : String(n);
}

export function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

export const USERNAME_RE = /^[A-Za-z0-9_.\-\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}]{3,32}$/u;
export const SWAPNAME_RE = /^[A-Za-z0-9_.\-\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}]{1,64}$/u;

/** On a phone the place a change happens may be below the fold: bring it into view. */
export function reveal(elem) {
  if (!elem || elem.hidden) return;
  const r = elem.getBoundingClientRect();
  if (r.top < 0 || r.bottom > window.innerHeight) elem.scrollIntoView({ block: "nearest" });
}

export function baseName(filepath) {
  return String(filepath || "").split("/").pop();
}
