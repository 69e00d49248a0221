/* The browser page of the face-swap service: accounts, uploads (multipart and tus),
 * face-swap tasks with live progress, playback and download, and the customers page
 * for administrators. No build step; works under a strict CSP (no inline code or
 * styles; every text goes in through textContent). */
(function () {
  "use strict";

  const MB = 1024 * 1024;
  const POLL_MS = 1500;
  const PAGE_SIZE = 20;
  const USERTYPES = [1, 100, 2000, 3000];
  const ADMIN = 3000;
  const TERMINAL = new Set(["finished", "failed", "cancelled"]);
  // Files at or above this size go over tus (resumable); smaller ones in one multipart
  // request. Both knobs can be overridden in localStorage for testing.
  const TUS_THRESHOLD = numberSetting("faceswap.tus_threshold", 20 * MB);
  const TUS_CHUNK = numberSetting("faceswap.tus_chunk", 8 * MB);

  const $ = (id) => document.getElementById(id);
  const I18N = window.I18N;

  const state = {
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
    wsTimer: null,
    pollTimer: null,
    adminPage: 1,
    adminTotal: 0,
    adminKeywords: "",
    adminRows: [],
  };

  const slots = {
    face: { kind: "image", name: "face", filepath: null, filename: "", busy: false, abort: null, url: null },
    video: { kind: "video", name: "video", filepath: null, filename: "", busy: false, abort: null, url: null },
  };

  function numberSetting(key, fallback) {
    try {
      const v = Number(window.localStorage.getItem(key));
      return Number.isFinite(v) && v > 0 ? v : (window.localStorage.getItem(key) === "0" ? 0 : fallback);
    } catch (e) {
      return fallback;
    }
  }

  // ---------------------------------------------------------------- language
  function pickLang() {
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

  function t(key, vars) {
    const table = I18N[state.lang] || I18N.zh;
    let s = key in table ? table[key] : (key in I18N.zh ? I18N.zh[key] : key);
    if (vars) s = s.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m));
    return s;
  }

  function applyLang() {
    document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
    document.title = t("title");
    for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
    for (const el of document.querySelectorAll("[data-i18n-label]")) el.setAttribute("aria-label", t(el.dataset.i18nLabel));
    $("lang").value = state.lang;
    renderWhoami();
    for (const task of state.tasks.values()) renderTask(task);
    renderCurrent();
    renderCustomers();
    renderConn();
    renderResumeHint();
    updateStart();
    renderDuration();
    renderLimits();
  }

  // ---------------------------------------------------------------- formatting
  function fmtBytes(n) {
    if (!Number.isFinite(n)) return "?";
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? String(Math.round(n)) : n.toFixed(n < 10 ? 1 : 0)) + " " + units[i];
  }

  function fmtTime(sec) {
    if (!Number.isFinite(sec) || sec < 0) return "?";
    sec = Math.round(sec);
    const h = Math.floor(sec / 3600), m = Math.floor((sec % 3600) / 60), s = sec % 60;
    const pad = (x) => String(x).padStart(2, "0");
    return h ? h + ":" + pad(m) + ":" + pad(s) : m + ":" + pad(s);
  }

  function fmtDate(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    if (isNaN(d.getTime())) return String(iso);
    return d.toLocaleString(state.lang === "zh" ? "zh-CN" : "en");
  }

  function typeName(n) {
    return USERTYPES.includes(n) ? t("type_" + n) : String(n);
  }

  // ---------------------------------------------------------------- messages
  function showError(text) {
    $("msg-text").textContent = text;
    $("msg").hidden = false;
  }

  function clearError() {
    $("msg").hidden = true;
    $("msg-text").textContent = "";
  }

  function showInfo(text) {
    $("notice").textContent = text;
  }

  // ---------------------------------------------------------------- HTTP
  class ApiError extends Error {
    constructor(message, code, data, aborted) {
      super(message);
      this.code = code || 0;
      this.data = data || null;
      this.aborted = !!aborted;
    }
  }

  function xsrfToken() {
    const m = document.cookie.match(/(?:^|;\s*)_xsrf=([^;]*)/);
    return m ? decodeURIComponent(m[1]) : state.xsrf;
  }

  function envelopeMsg(data, code) {
    if (data && typeof data.msg === "string" && data.msg) return data.msg;
    if (data && data.status === 2 && typeof data.progress === "string" && data.progress) return data.progress;
    return code ? t("err_http", { code: code }) : t("err_network");
  }

  /** JSON request. Resolves with the body; rejects with ApiError carrying a sentence.
   *  opts.raw: don't treat a non-zero `status` as failure (view_task). */
  async function api(method, url, body, opts) {
    opts = opts || {};
    const headers = { Accept: "application/json" };
    if (method !== "GET" && method !== "HEAD") headers["X-XSRFToken"] = xsrfToken();
    const init = { method: method, headers: headers, credentials: "same-origin", cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(url, init);
    } catch (e) {
      throw new ApiError(t("err_network"), 0);
    }
    let data = null;
    try { data = await resp.json(); } catch (e) { data = null; }
    if (!resp.ok || !data || (!opts.raw && data.status !== 0)) {
      const err = new ApiError(envelopeMsg(data, resp.status || 0), resp.status, data);
      if (resp.status === 401 && !opts.allow401 && state.user) {
        sessionLost();
        err.handled = true; // the page already says the session expired
      }
      throw err;
    }
    if (typeof data.xsrf === "string") state.xsrf = data.xsrf;
    return data;
  }

  /** Run fn with button disabled; failures are shown in the page. */
  async function withButton(button, fn) {
    if (button) button.disabled = true;
    try {
      return await fn();
    } catch (e) {
      if (!e.handled) showError(e.message || String(e));
      return undefined;
    } finally {
      if (button) button.disabled = false;
      updateStart();
    }
  }

  // ---------------------------------------------------------------- session
  async function boot() {
    state.lang = pickLang();
    applyLang();
    bindEvents();
    try {
      const d = await api("GET", "/api/session", undefined, { allow401: true });
      enter(d.userdata, d.limits);
    } catch (e) {
      showAuth();
      if (e.code !== 401) showError(e.message);
    } finally {
      $("loading").hidden = true;
    }
  }

  async function refreshSession() {
    const d = await api("GET", "/api/session");
    enter(d.userdata, d.limits);
  }

  function showAuth() {
    $("auth-view").hidden = false;
    $("swap-view").hidden = true;
    $("admin-view").hidden = true;
    $("nav").hidden = true;
    $("logout").hidden = true;
    $("whoami").hidden = true;
  }

  function enter(user, limits) {
    const wasIn = state.user && state.user.id === user.id;
    state.user = user;
    state.limits = limits || null;
    $("auth-view").hidden = true;
    $("nav").hidden = false;
    $("logout").hidden = false;
    $("whoami").hidden = false;
    $("nav-admin").hidden = user.usertype !== ADMIN;
    renderWhoami();
    if (!wasIn) {
      restoreUploads();
      if (!$("swapname").value) $("swapname").value = newSwapname();
      loadTasks();
      connectWs();
    }
    renderResumeHint();
    renderLimits();
    route();
    updateStart();
  }

  function leave() {
    state.user = null;
    state.limits = null;
    if (state.ws) { const ws = state.ws; state.ws = null; ws.onclose = null; ws.close(); }
    state.wsLive = false;
    clearTimeout(state.wsTimer);
    stopPolling();
    for (const s of Object.values(slots)) {
      if (s.abort) s.abort();
      resetSlot(s);
    }
    state.tasks.clear();
    state.rows.clear();
    $("tasks").replaceChildren();
    state.currentId = null;
    state.playingId = null;
    $("current").hidden = true;
    $("player-card").hidden = true;
    $("player").removeAttribute("src");
    $("player").load();
    state.adminRows = [];
    $("customers-body").replaceChildren();
    $("swapname").value = "";
    showAuth();
  }

  function sessionLost() {
    leave();
    showError(t("err_session"));
  }

  function renderWhoami() {
    if (!state.user) return;
    $("whoami").textContent = t("whoami", { name: state.user.username, type: typeName(state.user.usertype) });
  }

  function renderLimits() {
    const l = state.limits;
    if (l && l.upload_bytes && l.video_seconds) {
      $("limits").textContent = t("limits", { size: fmtBytes(l.upload_bytes), dur: fmtTime(l.video_seconds) });
    } else {
      $("limits").textContent = "";
    }
  }

  const USERNAME_RE = /^[A-Za-z0-9_.\-\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}]{3,32}$/u;
  const SWAPNAME_RE = /^[A-Za-z0-9_.\-\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}]{1,64}$/u;

  async function onLogin(ev) {
    ev.preventDefault();
    clearError();
    const username = $("login-username").value.trim();
    const password = $("login-password").value;
    if (!username || !password) { showError(t("err_required")); return; }
    await withButton($("login-submit"), async () => {
      await login(username, password);
      $("login-password").value = "";
      showInfo("");
    });
  }

  async function login(username, password) {
    const d = await api("POST", "/api/mgr/customers", { action: "login", data: { username: username, password: password } });
    try {
      await refreshSession();
    } catch (e) {
      enter(d.userdata, null); // the session route may be missing: still usable
    }
  }

  async function onRegister(ev) {
    ev.preventDefault();
    clearError();
    const username = $("reg-username").value.trim();
    const password = $("reg-password").value;
    const phone = $("reg-phone").value.trim();
    const email = $("reg-email").value.trim();
    if (!USERNAME_RE.test(username)) { showError(t("err_username")); $("reg-username").focus(); return; }
    if (password.length < 6) { showError(t("err_password")); $("reg-password").focus(); return; }
    if (password !== $("reg-password2").value) { showError(t("err_passwords")); $("reg-password2").focus(); return; }
    if (phone && !/^\d{6,15}$/.test(phone)) { showError(t("err_phone")); $("reg-phone").focus(); return; }
    if (email && !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(email)) { showError(t("err_email")); $("reg-email").focus(); return; }
    const data = { username: username, password: password };
    if (phone) data.phonenumber = phone;
    if (email) data.address = email;
    await withButton($("register-submit"), async () => {
      await api("POST", "/api/mgr/customers", { action: "add_customer", data: data });
      await login(username, password);
      for (const id of ["reg-password", "reg-password2"]) $(id).value = "";
      showInfo(t("registered"));
    });
  }

  async function onLogout() {
    clearError();
    await withButton($("logout"), async () => {
      await api("POST", "/api/mgr/customers", { action: "logout" }, { allow401: true });
      leave();
      showInfo(t("logged_out"));
      $("login-username").focus();
    });
  }

  // ---------------------------------------------------------------- views
  function route() {
    if (!state.user) return;
    const admin = location.hash === "#admin" && state.user.usertype === ADMIN;
    $("swap-view").hidden = admin;
    $("admin-view").hidden = !admin;
    $("nav-swap").setAttribute("aria-current", admin ? "false" : "page");
    $("nav-admin").setAttribute("aria-current", admin ? "page" : "false");
    if (admin) loadCustomers();
  }

  // ---------------------------------------------------------------- uploads
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
  function restoreUploads() {
    const key = storageKey();
    let v = null;
    try { v = JSON.parse(window.sessionStorage.getItem(key) || "null"); } catch (e) { v = null; }
    if (!v) return;
    if (v.face && v.face.filepath) {
      Object.assign(slots.face, v.face);
      $("face-thumb").src = mediaUrl(v.face.filepath);
      $("face-thumb").alt = v.face.filename;
      $("face-thumb").hidden = false;
      setSlotStatus(slots.face, t("uploaded", { name: v.face.filename }));
    }
    if (v.video && v.video.filepath) {
      Object.assign(slots.video, v.video);
      $("video-preview").src = playUrl(v.video.filepath);
      $("video-preview").hidden = false;
      setSlotStatus(slots.video, t("uploaded", { name: v.video.filename }));
    }
  }

  function setSlotStatus(slot, text, isError) {
    const el = $(slot.name + "-status");
    el.textContent = text;
    el.classList.toggle("error", !!isError);
  }

  function resetSlot(slot) {
    slot.filepath = null;
    slot.filename = "";
    slot.busy = false;
    slot.abort = null;
    $(slot.name + "-up").hidden = true;
    setSlotStatus(slot, "");
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

  function onFileChosen(slot) {
    const input = $(slot.name + "-file");
    const file = input.files && input.files[0];
    if (!file) return;
    clearError();
    if (slot.abort) slot.abort();
    resetSlot(slot);
    slot.filename = file.name;
    slot.url = URL.createObjectURL(file);
    if (slot.kind === "image") {
      const img = $("face-thumb");
      img.alt = file.name;
      img.onerror = () => { img.hidden = true; };
      img.src = slot.url;
      img.hidden = false;
    } else {
      const v = $("video-preview");
      v.onloadedmetadata = () => {
        v.dataset.duration = String(v.duration);
        renderDuration();
        const max = state.limits && state.limits.video_seconds;
        if (max && v.duration > max + 0.5) {
          if (slot.abort) slot.abort();
          const msg = t("err_too_long", { dur: fmtTime(v.duration), max: fmtTime(max) });
          setSlotStatus(slot, msg, true);
          showError(msg);
        }
      };
      v.onerror = () => { v.hidden = true; $("video-duration").textContent = t("err_preview"); };
      v.src = slot.url;
      v.hidden = false;
    }
    const max = state.limits && state.limits.upload_bytes;
    if (max && file.size > max) {
      const msg = t("err_too_big", { size: fmtBytes(file.size), max: fmtBytes(max) });
      setSlotStatus(slot, msg, true);
      showError(msg);
      return;
    }
    upload(slot, file);
  }

  function renderDuration() {
    const v = $("video-preview");
    const d = Number(v.dataset.duration);
    if (v.dataset.duration && Number.isFinite(d)) $("video-duration").textContent = t("duration", { dur: fmtTime(d) });
  }

  async function upload(slot, file) {
    slot.busy = true;
    updateStart();
    $(slot.name + "-up").hidden = false;
    $(slot.name + "-progress").value = 0;
    $(slot.name + "-progress-text").textContent = "0 %";
    setSlotStatus(slot, t("uploading", { name: file.name }));
    renderResumeHint();
    try {
      const useTus = window.tus && window.tus.isSupported && file.size >= TUS_THRESHOLD;
      const filepath = useTus ? await uploadTus(slot, file) : await uploadMultipart(slot, file);
      slot.filepath = filepath;
      slot.filename = file.name;
      $(slot.name + "-progress").value = 100;
      setSlotStatus(slot, t("uploaded", { name: file.name }));
      saveUploads();
      renderResumeHint();
    } catch (e) {
      slot.filepath = null;
      const msg = e.aborted ? t("err_upload_aborted") : t("err_upload", { msg: e.message });
      setSlotStatus(slot, msg, true);
      if (e.code === 401 && state.user) sessionLost();
      else if (!e.aborted) showError(msg);
    } finally {
      slot.busy = false;
      slot.abort = null;
      $(slot.name + "-up").hidden = true;
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
      $(slot.name + "-progress-text").textContent = t("speed", {
        pct: Math.floor(pct) + " %", done: fmtBytes(done), total: fmtBytes(total), speed: fmtBytes(speed),
      });
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
        if (xhr.status >= 200 && xhr.status < 300 && data && data.status === 0 && data.filepath) {
          resolve(data.filepath);
        } else if (xhr.status >= 200 && xhr.status < 300 && data && data.status === 0) {
          reject(new ApiError(t("err_no_filepath"), xhr.status, data));
        } else {
          reject(new ApiError(envelopeMsg(data, xhr.status), xhr.status, data));
        }
      };
      xhr.onerror = () => reject(new ApiError(t("err_network"), 0));
      xhr.onabort = () => reject(new ApiError(t("err_upload_aborted"), 0, null, true));
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

  function tusErrorMessage(err) {
    const res = err && err.originalResponse;
    if (res) {
      let data = null;
      try { data = JSON.parse(res.getBody() || "null"); } catch (e) { data = null; }
      const code = res.getStatus();
      if (code) return { msg: envelopeMsg(data, code), code: code };
    }
    return { msg: t("err_network"), code: 0 };
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
          if (fp) filepath = fp;
        },
        onShouldRetry: (err, attempt, options) => {
          const code = err && err.originalResponse ? err.originalResponse.getStatus() : 0;
          const retry = (!(code >= 400 && code < 500) || code === 409 || code === 423) && navigator.onLine !== false;
          if (retry) showInfo(t("err_network") + " (" + (attempt + 1) + "/" + options.retryDelays.length + ")");
          return retry;
        },
        onSuccess: async () => {
          if (!filepath && upload.url) {
            try {
              const r = await fetch(upload.url, { method: "HEAD", headers: { "Tus-Resumable": "1.0.0" }, credentials: "same-origin" });
              filepath = r.headers.get("Upload-Filepath");
            } catch (e) { /* reported below */ }
          }
          finished = true;
          if (filepath) resolve(filepath);
          else reject(new ApiError(t("err_no_filepath"), 0));
        },
        onError: (err) => {
          const { msg, code } = tusErrorMessage(err);
          fail(new ApiError(msg, code));
        },
      });
      slot.abort = () => {
        upload.abort(true).catch(() => {});
        fail(new ApiError(t("err_upload_aborted"), 0, null, true));
      };
      report(0, file.size);
      upload.findPreviousUploads().then((previous) => {
        if (finished) return;
        if (previous.length) {
          previous.sort((a, b) => String(b.creationTime).localeCompare(String(a.creationTime)));
          upload.resumeFromPreviousUpload(previous[0]);
          showInfo(t("upload_resuming", { pct: "…" }));
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
          out.push((v && v.metadata && v.metadata.filename) || key);
        } catch (e) { /* skip */ }
      }
    } catch (e) { /* storage disabled */ }
    return out;
  }

  function renderResumeHint() {
    const names = pendingTusUploads();
    const busy = slots.face.busy || slots.video.busy;
    $("resume-hint").hidden = !names.length || busy;
    $("resume-hint").textContent = names.length ? t("resume_hint", { name: names.join(", ") }) : "";
  }

  // ---------------------------------------------------------------- swap
  function newSwapname() {
    const d = new Date();
    const p = (x) => String(x).padStart(2, "0");
    return "swap_" + d.getFullYear() + p(d.getMonth() + 1) + p(d.getDate()) + "_" + p(d.getHours()) + p(d.getMinutes()) + p(d.getSeconds());
  }

  function updateStart() {
    const name = $("swapname").value.trim();
    let hint = "";
    if (slots.face.busy || slots.video.busy) hint = t("hint_uploading");
    else if (!slots.face.filepath) hint = t("hint_need_face");
    else if (!slots.video.filepath) hint = t("hint_need_video");
    else if (!SWAPNAME_RE.test(name)) hint = t("err_swapname");
    const ok = !!state.user && !hint && !state.submitting;
    $("start").disabled = !ok;
    $("start-hint").textContent = hint || (ok ? t("hint_ready") : "");
    $("swapname").setAttribute("aria-invalid", name && !SWAPNAME_RE.test(name) ? "true" : "false");
    $("face-abort").disabled = !slots.face.busy;
    $("video-abort").disabled = !slots.video.busy;
    $("face-file").disabled = slots.face.busy;
    $("video-file").disabled = slots.video.busy;
  }

  async function onStart(ev) {
    ev.preventDefault();
    clearError();
    updateStart();
    if ($("start").disabled) return;
    const swapname = $("swapname").value.trim();
    state.submitting = true;
    updateStart();
    try {
      const d = await api("POST", "/video/faceswap", {
        imagepath: slots.face.filepath,
        videopath: slots.video.filepath,
        swapname: swapname,
        many_faces: $("many-faces").checked,
        keep_mouth: $("keep-mouth").checked,
        quality: $("quality").value,
      });
      const task = mergeTask({ task_id: d.task_id, swapname: swapname, state: "queued", progress: 0, created: new Date().toISOString() });
      state.currentId = task.task_id;
      renderCurrent();
      showInfo(t("started", { name: swapname }));
      $("swapname").value = newSwapname();
      if (!state.wsLive) startPolling();
    } catch (e) {
      if (!e.handled) showError(t("err_start", { msg: e.message }));
    } finally {
      state.submitting = false;
      updateStart();
    }
  }

  // ---------------------------------------------------------------- tasks
  async function loadTasks() {
    try {
      const d = await api("GET", "/video/tasks");
      for (const entry of d.tasks || []) mergeTask(entry);
      if (!state.currentId) {
        const active = (d.tasks || []).find((x) => !TERMINAL.has(x.state));
        if (active) state.currentId = active.task_id;
      }
      renderCurrent();
      renderTaskOrder();
      if (!state.wsLive && hasActive()) startPolling();
    } catch (e) {
      if (state.user && !e.handled) showError(e.message);
    }
  }

  function hasActive() {
    for (const task of state.tasks.values()) if (!TERMINAL.has(task.state)) return true;
    return false;
  }

  /** Merge a task entry (from /video/tasks) or a progress message (from view_task or the
   *  WebSocket) into the task table and re-render it. */
  function mergeTask(msg, taskId) {
    const id = msg.task_id || taskId;
    if (!id) return null;
    const known = state.tasks.get(id);
    const task = known || { task_id: id, swapname: msg.swapname || id, created: new Date().toISOString(), progress: 0, state: "queued" };
    const before = task.state;
    for (const k of ["swapname", "created", "imagepath", "videopath", "quality", "frames_done", "frames_total", "fps", "eta_s", "filepath", "error"]) {
      if (msg[k] !== undefined && msg[k] !== null) task[k] = msg[k];
    }
    if (msg.status === 1) {
      task.state = "finished";
      task.progress = 100;
    } else if (msg.status === 2) {
      task.state = msg.state === "cancelled" ? "cancelled" : "failed";
      task.error = typeof msg.progress === "string" ? msg.progress : (msg.msg || msg.error || "");
    } else {
      if (msg.state) task.state = msg.state;
      if (typeof msg.progress === "number") task.progress = msg.progress;
      else if (msg.progress !== undefined && !isNaN(Number(msg.progress)) && msg.progress !== "") task.progress = Number(msg.progress);
      if (task.state === "finished") task.progress = 100;
    }
    state.tasks.set(id, task);
    renderTask(task);
    if (!known) renderTaskOrder();
    if (known && before !== task.state) onTransition(task, before);
    if (id === state.currentId) renderCurrent();
    return task;
  }

  function onTransition(task, before) {
    if (task.state === "finished") {
      showInfo(t("finished", { name: task.swapname }));
      if (task.task_id === state.currentId && task.filepath) play(task);
    } else if (task.state === "failed" && !TERMINAL.has(before)) {
      showError(t("err_task", { msg: task.error || task.swapname }));
    } else if (task.state === "cancelled") {
      showInfo(t("cancelled", { name: task.swapname }));
    }
  }

  function renderTaskOrder() {
    const list = [...state.tasks.values()].sort((a, b) => String(b.created || "").localeCompare(String(a.created || "")));
    const ul = $("tasks");
    for (const task of list) {
      const row = state.rows.get(task.task_id) || renderTask(task);
      ul.appendChild(row.li);
    }
    $("tasks-empty").hidden = list.length > 0;
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function renderTask(task) {
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
      row.created = el("p", "task-created");
      const actions = el("div", "task-actions");
      row.cancel = el("button", "secondary small task-cancel");
      row.cancel.type = "button";
      row.cancel.addEventListener("click", () => cancelTask(task.task_id, row.cancel));
      row.play = el("button", "small task-play");
      row.play.type = "button";
      row.play.addEventListener("click", () => play(state.tasks.get(task.task_id)));
      row.download = el("a", "button small secondary task-download");
      row.download.setAttribute("download", "");
      actions.append(row.play, row.download, row.cancel);
      row.li.append(head, row.progress, row.detail, row.created, actions);
      state.rows.set(task.task_id, row);
    }
    const active = !TERMINAL.has(task.state);
    row.li.dataset.state = task.state;
    row.name.textContent = task.swapname;
    row.state.textContent = active && task.cancelling ? t("state_cancelling") : t("state_" + task.state);
    row.state.className = "badge state-" + task.state;
    row.progress.value = Number(task.progress) || 0;
    row.progress.hidden = !active;
    row.progress.setAttribute("aria-label", t("swap_progress") + " " + task.swapname);
    row.detail.textContent = task.state === "failed" ? (task.error || "") : (active ? progressDetail(task) : "");
    row.detail.classList.toggle("error", task.state === "failed");
    row.created.textContent = fmtDate(task.created);
    row.cancel.textContent = t("cancel");
    row.cancel.setAttribute("aria-label", t("cancel") + " " + task.swapname);
    row.cancel.hidden = !active;
    row.cancel.disabled = !!task.cancelling;
    const done = task.state === "finished" && !!task.filepath;
    row.play.textContent = t("play");
    row.play.setAttribute("aria-label", t("play") + " " + task.swapname);
    row.play.hidden = !done;
    row.download.textContent = t("download");
    row.download.setAttribute("aria-label", t("download") + " " + task.swapname);
    row.download.hidden = !done;
    if (done) row.download.href = downloadUrl(task.filepath);
    return row;
  }

  function progressDetail(task) {
    const parts = [Math.floor(Number(task.progress) || 0) + " %"];
    if (task.frames_total) parts.push(t("frames", { done: task.frames_done || 0, total: task.frames_total }));
    if (Number(task.fps) > 0) parts.push(t("fps", { fps: Number(task.fps).toFixed(1) }));
    if (Number.isFinite(Number(task.eta_s)) && task.eta_s !== null && task.eta_s !== undefined && task.state === "running") {
      parts.push(t("eta", { time: fmtTime(Number(task.eta_s)) }));
    }
    return parts.join(" · ");
  }

  function renderCurrent() {
    const task = state.currentId && state.tasks.get(state.currentId);
    $("current").hidden = !task;
    if (!task) return;
    const pct = task.state === "finished" ? 100 : Math.max(0, Math.min(100, Number(task.progress) || 0));
    $("current-name").textContent = task.swapname;
    $("current-progress").value = pct;
    $("current-percent").textContent = Math.floor(pct) + " %";
    const detail = [];
    if (task.frames_total) detail.push(t("frames", { done: task.frames_done || 0, total: task.frames_total }));
    if (Number(task.fps) > 0) detail.push(t("fps", { fps: Number(task.fps).toFixed(1) }));
    if (task.state === "running" && task.eta_s !== undefined && task.eta_s !== null) detail.push(t("eta", { time: fmtTime(Number(task.eta_s)) }));
    $("current-detail").textContent = detail.join(" · ");
    const stateText = !TERMINAL.has(task.state) && task.cancelling ? t("state_cancelling") : t("state_" + task.state);
    $("current-state").textContent = stateText + (task.state === "failed" && task.error ? ": " + task.error : "");
    $("current-state").className = "state state-" + task.state;
  }

  async function cancelTask(id, button) {
    const task = state.tasks.get(id);
    clearError();
    await withButton(button, async () => {
      await api("POST", "/video/cancel_task", { task_id: id });
      // The worker stops shortly; the final state arrives over the socket (or polling).
      if (task && !TERMINAL.has(task.state)) task.cancelling = true;
      if (!state.wsLive) startPolling();
    });
    if (task) renderTask(task);
  }

  // ---------------------------------------------------------------- media
  function mediaUrl(filepath) {
    return "/static/media/" + filepath.split("/").map(encodeURIComponent).join("/");
  }

  function downloadUrl(filepath) {
    return mediaUrl(filepath) + "?download=1";
  }

  function playUrl(filepath) {
    return "/video/test_resp/?path=" + encodeURIComponent("/" + filepath);
  }

  function play(task) {
    if (!task || !task.filepath) return;
    state.playingId = task.task_id;
    const v = $("player");
    $("player-card").hidden = false;
    $("player-name").textContent = task.swapname;
    v.src = playUrl(task.filepath);
    v.load();
    $("player-download").href = downloadUrl(task.filepath);
    $("player-download").setAttribute("download", task.filepath.split("/").pop());
  }

  function onPlayerError() {
    const v = $("player");
    if (!v.getAttribute("src")) return;
    const code = v.error ? v.error.code : 0;
    showError(t("err_play", { code: code }));
  }

  // ---------------------------------------------------------------- live progress
  function connectWs() {
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
      const delay = Math.min(30000, 1000 * Math.pow(2, state.wsRetry));
      state.wsRetry += 1;
      state.wsTimer = setTimeout(connectWs, delay);
    };
  }

  function renderConn() {
    const active = hasActive();
    $("conn-state").textContent = !state.user || !active ? "" : (state.wsLive ? t("conn_live") : t("conn_polling"));
  }

  function startPolling() {
    if (state.pollTimer) return;
    state.pollTimer = setInterval(pollOnce, POLL_MS);
    renderConn();
  }

  function stopPolling() {
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
      if (!active.length) { stopPolling(); renderConn(); return; }
      for (const task of active) {
        try {
          const d = await api("POST", "/video/view_task", { task_id: task.task_id }, { raw: true });
          state.polls += 1;
          mergeTask(d, task.task_id);
        } catch (e) {
          if (e.code >= 400 && e.code < 500 && e.code !== 401 && e.code !== 429) {
            mergeTask({ status: 2, progress: e.message, state: "failed" }, task.task_id);
          } else if (e.code === 0) {
            $("conn-state").textContent = t("err_network");
            break;
          }
        }
      }
    } finally {
      polling = false;
      renderConn();
    }
  }

  // ---------------------------------------------------------------- administrators
  async function loadCustomers() {
    if (!state.user || state.user.usertype !== ADMIN) return;
    const q = new URLSearchParams({ action: "list_customer", pagenum: String(state.adminPage), pagesize: String(PAGE_SIZE), keywords: state.adminKeywords });
    $("page-prev").disabled = true;
    $("page-next").disabled = true;
    await withButton($("admin-search-btn"), async () => {
      const d = await api("GET", "/api/mgr/customers?" + q.toString());
      state.adminRows = d.retlist || [];
      state.adminTotal = Number(d.total) || 0;
      const pages = Math.max(1, Math.ceil(state.adminTotal / PAGE_SIZE));
      if (state.adminPage > pages && state.adminTotal > 0) {
        state.adminPage = pages;
        return loadCustomers();
      }
    });
    renderCustomers();
  }

  function renderCustomers() {
    const body = $("customers-body");
    if (!body) return;
    body.replaceChildren();
    for (const c of state.adminRows) {
      const tr = el("tr");
      tr.dataset.userid = String(c.id);
      const cell = (cls, text, label) => {
        const td = el("td", cls, text);
        td.dataset.label = label;
        return td;
      };
      tr.append(cell("", String(c.id), "ID"));
      tr.append(cell("cust-name", c.username, t("username")));
      const tdType = cell("cust-type", undefined, t("usertype"));
      const sel = el("select");
      sel.id = "type-" + c.id;
      sel.setAttribute("aria-label", t("usertype") + " " + c.username);
      for (const n of USERTYPES) {
        const o = el("option", "", typeName(n));
        o.value = String(n);
        if (n === c.usertype) o.selected = true;
        sel.append(o);
      }
      const btn = el("button", "small", t("change_type"));
      btn.type = "button";
      btn.disabled = true;
      btn.setAttribute("aria-label", t("change_type") + " " + c.username);
      sel.addEventListener("change", () => { btn.disabled = Number(sel.value) === c.usertype; });
      btn.addEventListener("click", async () => {
        clearError();
        const newtype = Number(sel.value);
        await withButton(btn, async () => {
          await api("POST", "/common/modifytype", { userid: c.id, newtype: newtype });
          c.usertype = newtype;
          showInfo(t("type_changed", { name: c.username, type: typeName(newtype) }));
          if (state.user && c.id === state.user.id) refreshSession().catch(() => {});
        });
        btn.disabled = Number(sel.value) === c.usertype;
      });
      tdType.append(sel, btn);
      tr.append(tdType);
      tr.append(cell("", c.phonenumber || "", t("phone")));
      tr.append(cell("", c.address || "", t("email")));
      body.append(tr);
    }
    const pages = Math.max(1, Math.ceil(state.adminTotal / PAGE_SIZE));
    $("page-info").textContent = t("page_info", { page: state.adminPage, pages: pages, total: state.adminTotal });
    $("page-prev").disabled = state.adminPage <= 1;
    $("page-next").disabled = state.adminPage >= pages;
  }

  // ---------------------------------------------------------------- wiring
  function bindEvents() {
    $("lang").addEventListener("change", () => {
      state.lang = $("lang").value === "en" ? "en" : "zh";
      try { window.localStorage.setItem("faceswap.lang", state.lang); } catch (e) { /* ignore */ }
      applyLang();
    });
    $("msg-close").addEventListener("click", clearError);
    $("login-form").addEventListener("submit", onLogin);
    $("register-form").addEventListener("submit", onRegister);
    $("logout").addEventListener("click", onLogout);
    $("face-file").addEventListener("change", () => onFileChosen(slots.face));
    $("video-file").addEventListener("change", () => onFileChosen(slots.video));
    $("face-abort").addEventListener("click", () => { if (slots.face.abort) slots.face.abort(); });
    $("video-abort").addEventListener("click", () => { if (slots.video.abort) slots.video.abort(); });
    $("swapname").addEventListener("input", updateStart);
    $("swap-form").addEventListener("submit", onStart);
    $("tasks-refresh").addEventListener("click", () => withButton($("tasks-refresh"), loadTasks));
    $("player").addEventListener("error", onPlayerError);
    $("admin-search").addEventListener("submit", (ev) => {
      ev.preventDefault();
      clearError();
      state.adminKeywords = $("admin-keywords").value.trim();
      state.adminPage = 1;
      loadCustomers();
    });
    $("page-prev").addEventListener("click", () => { if (state.adminPage > 1) { state.adminPage -= 1; loadCustomers(); } });
    $("page-next").addEventListener("click", () => { state.adminPage += 1; loadCustomers(); });
    window.addEventListener("hashchange", route);
    window.addEventListener("online", () => { if (state.user && !state.ws) connectWs(); });
  }

  // Exposed for tests and debugging only.
  window.faceswapPage = { state: state, slots: slots };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
  else boot();
})();
