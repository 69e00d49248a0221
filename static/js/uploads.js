/* The two file slots (face photo, video): choosing or dropping a file, checks before
 * upload, multipart and tus (resumable) uploads with progress, cancel, and the memory
 * of finished uploads across a reload of the tab. */
import { $, state, slots, t, msg, render, reveal, el, warningMessage, fmtBytes, fmtTime, fmtLimit, baseName, TUS_THRESHOLD, TUS_CHUNK, FACE_VIDEO_SECONDS } from "./core.js";
import { ApiError, errorMessage, xsrfToken } from "./api.js";
import { showInfo, clearNotices } from "./notices.js";
import { confirmAction } from "./dialog.js";
import { mediaUrl, playUrl } from "./media.js";
import { updateStart } from "./start.js";
import { offerTrim, clearTrim, resetPreview } from "./preview.js";
import { resetFaces, autoSourceFaces } from "./faces.js";
import { loadFiles, renderExtras } from "./library.js";

/** What an upload's refusal means when the answer carries no known code. */
const UPLOAD_CONTEXT = { 400: "err_upload_bad", 413: "err_upload_too_big", 415: "err_upload_type", 429: "err_upload_quota" };

function storageKey() {
  return state.user ? "faceswap.uploads." + state.user.id : null;
}

export function saveUploads() {
  const key = storageKey();
  if (!key) return;
  const v = {};
  for (const s of Object.values(slots)) {
    if (s.filepath) v[s.name] = { filepath: s.filepath, filename: s.filename, fileKind: s.fileKind, warnings: s.warnings || [], faces: s.faces || 0 };
  }
  v.extraFaces = state.extraFaces;
  try { window.sessionStorage.setItem(key, JSON.stringify(v)); } catch (e) { /* ignore */ }
}

/** The slot's preview: a photo (img) or a video, from a local object URL or the server. */
function showPreview(slot, fileKind, src, alt) {
  const img = $(slot.name === "face" ? "face-thumb" : "video-thumb");
  const video = $(slot.name === "face" ? "face-video" : "video-preview");
  if (fileKind === "image") {
    video.hidden = true;
    video.removeAttribute("src");
    img.alt = alt;
    img.src = src;
    img.hidden = false;
  } else {
    img.hidden = true;
    img.removeAttribute("src");
    video.src = src;
    video.hidden = false;
  }
  return fileKind === "image" ? img : video;
}

/** The slot takes a file already on the server (restored after a reload, or from the
 *  library): no upload. `file`: {filepath, filename?, kind, warnings?, faces?, duration?, thumbnail?}. */
export function useServerFile(slot, file, how) {
  clearNotices();
  if (slot.abort) { const abort = slot.abort; slot.abort = null; abort(); }
  resetSlot(slot);
  slot.refused = false;
  const kind = file.kind === "image" ? "image" : "video";
  slot.fileKind = kind;
  slot.filepath = file.filepath;
  slot.filename = file.filename || baseName(file.filepath);
  slot.warnings = Array.isArray(file.warnings) ? file.warnings : [];
  slot.faces = Number(file.faces) || 0;
  const choice = slot.choice;
  const elem = showPreview(slot, kind, kind === "image" ? mediaUrl(file.filepath) : playUrl(file.filepath), slot.filename);
  if (kind === "video") {
    elem.onloadedmetadata = () => { if (slot.choice === choice) onDuration(slot, elem.duration); };
    if (Number(file.duration) > 0) onDuration(slot, Number(file.duration));
  }
  setSlotStatus(slot, msg(how || "uploaded", { name: slot.filename }));
  saveUploads();
  afterFileSet(slot);
  updateStart();
}

/** What depends on the slot's file: the face pickers, the preview, the library's buttons. */
function afterFileSet(slot) {
  resetFaces(slot.name);
  resetPreview();
  if (slot.name === "face" && slot.filepath) autoSourceFaces();
  window.dispatchEvent(new Event("faceswap:files"));
}

/** A video's duration is known: the video slot offers a trim when it is longer than
 *  the user's limit; the face slot refuses a face video longer than the server takes. */
function onDuration(slot, duration) {
  if (!Number.isFinite(duration)) return;
  if (slot.name === "video") {
    const v = $("video-preview");
    v.dataset.duration = String(duration);
    renderDuration();
    const max = state.limits && state.limits.video_seconds;
    // Longer than the user may swap: a part of it can be used; longer than the server
    // takes at all (limits.upload_seconds): refused.
    const most = state.limits && state.limits.upload_seconds;
    if (most && duration > most + 0.5) {
      clearTrim();
      refuse(slot, msg("err_too_long", { dur: fmtTime(duration), max: fmtLimit(most) }));
    } else if (max && duration > max + 0.5) offerTrim(duration, max);
    else clearTrim();
    resetPreview();
  } else if (duration > FACE_VIDEO_SECONDS + 0.5) {
    refuse(slot, msg("err_face_video_long", { dur: fmtTime(duration), max: fmtLimit(FACE_VIDEO_SECONDS) }));
  }
}

/** After a reload, the files uploaded in this tab are still on the server. */
export function restoreUploads() {
  const key = storageKey();
  let v = null;
  try { v = JSON.parse(window.sessionStorage.getItem(key) || "null"); } catch (e) { v = null; }
  if (!v) return;
  for (const name of ["face", "video"]) {
    const saved = v[name];
    if (saved && saved.filepath) {
      useServerFile(slots[name], { ...saved, kind: saved.fileKind || slots[name].kind });
    }
  }
  state.extraFaces = Array.isArray(v.extraFaces) ? v.extraFaces.slice(0, 9) : [];
  renderExtras();
}

/** The line under a slot: a message, an error (red, announced) or nothing. */
function setSlotStatus(slot, message, isError) {
  slot.status = message ? { message: message, error: !!isError } : null;
  renderSlot(slot);
  if (isError) reveal($(slot.name + "-status"));
}

export function renderSlot(slot) {
  const box = $(slot.name + "-status");
  box.textContent = slot.status ? render(slot.status.message) : "";
  box.classList.toggle("error", !!(slot.status && slot.status.error));
  box.setAttribute("role", slot.status && slot.status.error ? "alert" : "status");
  if (slot.progress) $(slot.name + "-progress-text").textContent = render(slot.progress);
  const list = $(slot.name + "-warnings");
  // With a face chosen in a group photo, "the largest face is used" is no longer true.
  const shown = (slot.warnings || []).filter((w) => !(slot.name === "face" && state.sourceFace && w && w.code === "photo_several_faces"));
  list.replaceChildren(...shown.map((w) => el("li", "", render(warningMessage(w)))));
  list.hidden = !shown.length;
  $(slot.name + "-advice").hidden = list.hidden;
}

export function resetSlot(slot) {
  slot.filepath = null;
  slot.filename = "";
  slot.busy = false;
  slot.abort = null;
  slot.progress = null;
  slot.warnings = [];
  slot.faces = 0;
  slot.fileKind = slot.kind;
  slot.choice = (slot.choice || 0) + 1; // callbacks of an earlier choice are ignored
  $(slot.name + "-up").hidden = true;
  setSlotStatus(slot, null);
  if (slot.url) { URL.revokeObjectURL(slot.url); slot.url = null; }
  for (const id of slot.name === "face" ? ["face-thumb", "face-video"] : ["video-thumb", "video-preview"]) {
    $(id).hidden = true;
    $(id).removeAttribute("src");
  }
  if (slot.name === "video") {
    $("video-duration").textContent = "";
    delete $("video-preview").dataset.duration;
    clearTrim();
  }
  resetFaces(slot.name);
  resetPreview();
}

/** Refuse the slot's file before or after its upload: Start cannot use it. */
export function refuse(slot, message) {
  if (slot.abort) { const abort = slot.abort; slot.abort = null; abort(); }
  slot.filepath = null;
  slot.refused = true;
  setSlotStatus(slot, message, true);
  saveUploads();
  updateStart();
}

function onInputChange(slot) {
  const input = $(slot.name + "-file");
  const file = input.files && input.files[0];
  // Forget the choice so that choosing the same file again (after a cancel or a
  // refusal) fires "change" again.
  input.value = "";
  if (file) chooseFile(slot, file);
}

export function chooseFile(slot, file) {
  clearNotices();
  if (slot.abort) { const abort = slot.abort; slot.abort = null; abort(); }
  resetSlot(slot);
  slot.refused = false;
  const choice = slot.choice;
  slot.filename = file.name;
  slot.url = URL.createObjectURL(file);
  const type = file.type || "";
  // The face slot also takes a short video of the person; the video slot a photo as
  // the target (the result is then a photo).
  const isVideo = type.startsWith("video/") || (!type && /\.(mp4|mov|mkv|webm|avi)$/i.test(file.name));
  const isImage = type.startsWith("image/");
  slot.fileKind = slot.name === "face" ? (isVideo ? "video" : "image") : (isImage ? "image" : "video");
  if (slot.name === "face" && type && !isImage && !isVideo) { refuse(slot, msg("err_not_image")); return; }
  const elem = showPreview(slot, slot.fileKind, slot.url, file.name);
  if (slot.fileKind === "image") {
    elem.onerror = () => { if (slot.choice === choice) { elem.hidden = true; refuse(slot, msg("err_not_image")); } };
  } else {
    elem.onloadedmetadata = () => { if (slot.choice === choice) onDuration(slot, elem.duration); };
    elem.onerror = () => {
      if (slot.choice !== choice) return;
      elem.hidden = true;
      if (slot.name === "video") $("video-duration").textContent = t("err_preview");
    };
  }
  const max = state.limits && state.limits.upload_bytes;
  if (max && file.size > max) {
    refuse(slot, msg("err_too_big", { size: fmtBytes(file.size), max: fmtBytes(max) }));
    return;
  }
  upload(slot, file, choice);
}

export function renderDuration() {
  const v = $("video-preview");
  const d = Number(v.dataset.duration);
  if (v.dataset.duration && Number.isFinite(d)) $("video-duration").textContent = t("duration", { dur: fmtTime(d) });
}

async function upload(slot, file, choice) {
  slot.busy = true;
  updateStart();
  $(slot.name + "-up").hidden = false;
  $(slot.name + "-progress").value = 0;
  slot.progress = msg("percent", { pct: 0 });
  setSlotStatus(slot, msg("uploading", { name: file.name }));
  renderResumeHint();
  try {
    const useTus = window.tus && window.tus.isSupported && file.size >= TUS_THRESHOLD;
    const answer = useTus ? await uploadTus(slot, file) : await uploadMultipart(slot, file);
    if (slot.choice !== choice || slot.refused) return; // refused meanwhile (too long)
    slot.filepath = answer.filepath;
    slot.warnings = Array.isArray(answer.warnings) ? answer.warnings : [];
    slot.faces = Number(answer.upload && answer.upload.faces) || 0;
    slot.filename = file.name;
    $(slot.name + "-progress").value = 100;
    setSlotStatus(slot, msg("uploaded", { name: file.name }));
    saveUploads();
    afterFileSet(slot);
    loadFiles();
    window.dispatchEvent(new Event("faceswap:session")); // the storage used changed
  } catch (e) {
    if (slot.choice !== choice || slot.refused) return;
    slot.filepath = null;
    if (e.aborted) {
      setSlotStatus(slot, msg("err_upload_aborted"));
    } else {
      if (!e.handled) setSlotStatus(slot, msg("err_upload", { msg: e.msg }), true);
    }
  } finally {
    if (slot.choice === choice) {
      slot.busy = false;
      slot.abort = null;
      slot.progress = null;
      $(slot.name + "-up").hidden = true;
    }
    renderResumeHint();
    updateStart();
  }
}

/** A progress reporter that shows percent, bytes and a speed over the last 3 s. */
function progressReporter(slot) {
  const samples = [];
  return function (done, total) {
    const now = performance.now();
    samples.push([now, done]);
    while (samples.length > 2 && now - samples[0][0] > 3000) samples.shift();
    const [t0, d0] = samples[0];
    const speed = now > t0 ? ((done - d0) * 1000) / (now - t0) : 0;
    const pct = total ? Math.min(100, (done * 100) / total) : 0;
    $(slot.name + "-progress").value = pct;
    slot.progress = msg("speed", {
      pct: Math.floor(pct) + " %", done: fmtBytes(done), total: fmtBytes(total), speed: fmtBytes(speed),
    });
    $(slot.name + "-progress-text").textContent = render(slot.progress);
  };
}

function uploadMultipart(slot, file) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    const report = progressReporter(slot);
    xhr.open("POST", "/video/upload");
    xhr.setRequestHeader("X-XSRFToken", xsrfToken());
    xhr.setRequestHeader("Accept", "application/json");
    const fd = new FormData();
    fd.append("filetype", slot.fileKind);
    if (state.user) fd.append("username", state.user.username);
    fd.append("file", file, file.name);
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) report(e.loaded, e.total); };
    xhr.onload = () => {
      let data = null;
      try { data = JSON.parse(xhr.responseText); } catch (e) { data = null; }
      const ok = xhr.status >= 200 && xhr.status < 300 && data && data.status === 0;
      if (ok && data.filepath) resolve(data);
      else if (ok) reject(new ApiError(msg("err_no_filepath"), xhr.status, data));
      else reject(new ApiError(errorMessage(data, xhr.status, UPLOAD_CONTEXT), xhr.status, data));
    };
    xhr.onerror = () => reject(new ApiError(msg("err_network"), 0));
    xhr.onabort = () => reject(new ApiError(msg("err_upload_aborted"), 0, null, true));
    slot.abort = () => xhr.abort();
    report(0, file.size);
    xhr.send(fd);
  });
}

/** The tus fingerprint: per user and per file, so that picking the same file again
 *  (after a dropped connection or a reload) finds the stored upload URL. */
function tusFingerprint(slot, file) {
  return ["faceswap", state.user ? state.user.id : 0, slot.fileKind, file.name, file.type, file.size, file.lastModified].join("-");
}

function tusError(err) {
  const res = err && err.originalResponse;
  if (res && res.getStatus()) {
    let data = null;
    try { data = JSON.parse(res.getBody() || "null"); } catch (e) { data = null; }
    return new ApiError(errorMessage(data, res.getStatus(), UPLOAD_CONTEXT), res.getStatus(), data);
  }
  return new ApiError(msg("err_network"), 0);
}

/** Upload-Filepath is percent-encoded UTF-8 (a header carries no other text safely). */
function headerPath(value) {
  try { return decodeURIComponent(value); } catch (e) { return value; }
}

function uploadTus(slot, file) {
  return new Promise((resolve, reject) => {
    const report = progressReporter(slot);
    let filepath = null;
    let finished = false;
    const fail = (e) => { if (!finished) { finished = true; reject(e); } };
    const upload = new window.tus.Upload(file, {
      endpoint: "/video/uploads/",
      chunkSize: TUS_CHUNK || Infinity,
      retryDelays: [0, 1000, 3000, 5000, 10000, 20000],
      metadata: { filename: file.name, filetype: slot.fileKind },
      headers: { "X-XSRFToken": xsrfToken() },
      fingerprint: () => Promise.resolve(tusFingerprint(slot, file)),
      storeFingerprintForResuming: true,
      removeFingerprintOnSuccess: true,
      onProgress: (sent, total) => report(sent, total),
      onAfterResponse: (req, res) => {
        const fp = res.getHeader("Upload-Filepath");
        if (fp) filepath = headerPath(fp);
      },
      onShouldRetry: (err, attempt, options) => {
        const code = err && err.originalResponse ? err.originalResponse.getStatus() : 0;
        const retry = (!(code >= 400 && code < 500) || code === 409 || code === 423) && navigator.onLine !== false;
        if (retry) showInfo(msg("upload_retrying", { n: attempt + 1, of: options.retryDelays.length }));
        return retry;
      },
      onSuccess: async () => {
        if (!filepath && upload.url) {
          try {
            const r = await fetch(upload.url, { method: "HEAD", headers: { "Tus-Resumable": "1.0.0" }, credentials: "same-origin" });
            const fp = r.headers.get("Upload-Filepath");
            if (fp) filepath = headerPath(fp);
          } catch (e) { /* reported below */ }
        }
        finished = true;
        if (filepath) resolve({ filepath: filepath });
        else reject(new ApiError(msg("err_no_filepath"), 0));
      },
      onError: (err) => fail(tusError(err)),
    });
    slot.abort = () => {
      upload.abort(true).catch(() => {});
      fail(new ApiError(msg("err_upload_aborted"), 0, null, true));
    };
    report(0, file.size);
    upload.findPreviousUploads().then((previous) => {
      if (finished) return;
      if (previous.length) {
        previous.sort((a, b) => String(b.creationTime).localeCompare(String(a.creationTime)));
        upload.resumeFromPreviousUpload(previous[0]);
        showInfo(msg("upload_resuming", { name: file.name }));
      }
      upload.start();
    }, () => upload.start());
  });
}

/** Unfinished tus uploads of this user, remembered by tus-js-client in localStorage. */
function pendingTusUploads() {
  const out = [];
  if (!state.user) return out;
  const prefix = "tus::faceswap-" + state.user.id + "-";
  try {
    for (let i = 0; i < window.localStorage.length; i++) {
      const key = window.localStorage.key(i);
      if (!key || !key.startsWith(prefix)) continue;
      try {
        const v = JSON.parse(window.localStorage.getItem(key));
        const name = v && v.metadata && v.metadata.filename;
        if (name && !out.includes(name)) out.push(name);
      } catch (e) { /* skip */ }
    }
  } catch (e) { /* storage disabled */ }
  return out;
}

export function renderResumeHint() {
  const names = pendingTusUploads();
  const busy = slots.face.busy || slots.video.busy;
  $("resume-hint").hidden = !names.length || busy;
  $("resume-hint").textContent = names.length ? t("resume_hint", { name: names.join(", ") }) : "";
}

async function onAbort(slot) {
  if (!slot.abort) return;
  const ok = await confirmAction(msg("confirm_cancel_upload", { name: slot.filename }), msg("cancel_upload"));
  if (ok && slot.abort) { const abort = slot.abort; slot.abort = null; abort(); }
}

/** Drag and drop on a slot's drop zone, as an alternative to its file button. */
function bindDrop(slot) {
  const zone = $(slot.name + "-drop");
  let depth = 0;
  const over = (on) => zone.classList.toggle("dragover", on);
  zone.addEventListener("dragenter", (ev) => { ev.preventDefault(); depth += 1; over(true); });
  zone.addEventListener("dragover", (ev) => { ev.preventDefault(); if (ev.dataTransfer) ev.dataTransfer.dropEffect = "copy"; });
  zone.addEventListener("dragleave", () => { depth = Math.max(0, depth - 1); if (!depth) over(false); });
  zone.addEventListener("drop", (ev) => {
    ev.preventDefault();
    depth = 0;
    over(false);
    if (slot.busy || $(slot.name + "-file").disabled) return;
    const file = ev.dataTransfer && ev.dataTransfer.files && ev.dataTransfer.files[0];
    if (file) chooseFile(slot, file);
  });
}

export function bindUploads() {
  for (const slot of Object.values(slots)) {
    $(slot.name + "-file").addEventListener("change", () => onInputChange(slot));
    $(slot.name + "-abort").addEventListener("click", () => onAbort(slot));
    bindDrop(slot);
  }
  // The server refused a file at start (its code names which one).
  window.addEventListener("faceswap:refused", (ev) => {
    const slot = slots[ev.detail.slot];
    if (slot && slot.filepath) refuse(slot, ev.detail.message);
  });
  // A file dropped next to a zone would make the browser leave the page for it.
  window.addEventListener("dragover", (ev) => ev.preventDefault());
  window.addEventListener("drop", (ev) => ev.preventDefault());
}
