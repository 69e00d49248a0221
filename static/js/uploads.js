/* The two file slots (face photo, video): choosing or dropping a file, checks before
 * upload, multipart and tus (resumable) uploads with progress, cancel, and the memory
 * of finished uploads across a reload of the tab. */
import { $, state, slots, t, msg, render, reveal, el, warningMessage, fmtBytes, fmtTime, fmtLimit, TUS_THRESHOLD, TUS_CHUNK } from "./core.js";
import { ApiError, errorMessage, xsrfToken } from "./api.js";
import { showInfo, clearNotices } from "./notices.js";
import { confirmAction } from "./dialog.js";
import { mediaUrl, playUrl } from "./media.js";
import { updateStart } from "./start.js";

/** What an upload's refusal means when the answer carries no known code. */
const UPLOAD_CONTEXT = { 400: "err_upload_bad", 413: "err_upload_too_big", 415: "err_upload_type", 429: "err_upload_quota" };

function storageKey() {
  return state.user ? "faceswap.uploads." + state.user.id : null;
}

function saveUploads() {
  const key = storageKey();
  if (!key) return;
  const v = {};
  for (const s of Object.values(slots)) if (s.filepath) v[s.name] = { filepath: s.filepath, filename: s.filename };
  try { window.sessionStorage.setItem(key, JSON.stringify(v)); } catch (e) { /* ignore */ }
}

/** After a reload, the files uploaded in this tab are still on the server. */
export function restoreUploads() {
  const key = storageKey();
  let v = null;
  try { v = JSON.parse(window.sessionStorage.getItem(key) || "null"); } catch (e) { v = null; }
  if (!v) return;
  if (v.face && v.face.filepath) {
    Object.assign(slots.face, v.face);
    $("face-thumb").src = mediaUrl(v.face.filepath);
    $("face-thumb").alt = v.face.filename;
    $("face-thumb").hidden = false;
    setSlotStatus(slots.face, msg("uploaded", { name: v.face.filename }));
  }
  if (v.video && v.video.filepath) {
    Object.assign(slots.video, v.video);
    const video = $("video-preview");
    video.onloadedmetadata = () => { video.dataset.duration = String(video.duration); renderDuration(); };
    video.src = playUrl(v.video.filepath);
    video.hidden = false;
    setSlotStatus(slots.video, msg("uploaded", { name: v.video.filename }));
  }
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
  list.replaceChildren(...(slot.warnings || []).map((w) => el("li", "", render(warningMessage(w)))));
  list.hidden = !(slot.warnings && slot.warnings.length);
}

export function resetSlot(slot) {
  slot.filepath = null;
  slot.filename = "";
  slot.busy = false;
  slot.abort = null;
  slot.progress = null;
  slot.warnings = [];
  slot.choice = (slot.choice || 0) + 1; // callbacks of an earlier choice are ignored
  $(slot.name + "-up").hidden = true;
  setSlotStatus(slot, null);
  if (slot.url) { URL.revokeObjectURL(slot.url); slot.url = null; }
  if (slot.kind === "image") {
    $("face-thumb").hidden = true;
    $("face-thumb").removeAttribute("src");
  } else {
    $("video-preview").hidden = true;
    $("video-preview").removeAttribute("src");
    $("video-duration").textContent = "";
    delete $("video-preview").dataset.duration;
  }
}

/** Refuse the slot's file before or after its upload: Start cannot use it. */
function refuse(slot, message) {
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
  if (slot.kind === "image") {
    if (file.type && !file.type.startsWith("image/")) { refuse(slot, msg("err_not_image")); return; }
    const img = $("face-thumb");
    img.alt = file.name;
    img.onerror = () => { if (slot.choice === choice) { img.hidden = true; refuse(slot, msg("err_not_image")); } };
    img.src = slot.url;
    img.hidden = false;
  } else {
    const v = $("video-preview");
    v.onloadedmetadata = () => {
      if (slot.choice !== choice) return;
      v.dataset.duration = String(v.duration);
      renderDuration();
      const max = state.limits && state.limits.video_seconds;
      if (max && v.duration > max + 0.5) {
        refuse(slot, msg("err_too_long", { dur: fmtTime(v.duration), max: fmtLimit(max) }));
      }
    };
    v.onerror = () => {
      if (slot.choice !== choice) return;
      v.hidden = true;
      $("video-duration").textContent = t("err_preview");
    };
    v.src = slot.url;
    v.hidden = false;
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
    slot.filename = file.name;
    $(slot.name + "-progress").value = 100;
    setSlotStatus(slot, msg("uploaded", { name: file.name }));
    saveUploads();
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
    fd.append("filetype", slot.kind);
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
  return ["faceswap", state.user ? state.user.id : 0, slot.kind, file.name, file.type, file.size, file.lastModified].join("-");
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
      metadata: { filename: file.name, filetype: slot.kind },
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
