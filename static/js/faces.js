/* The face pickers: the people found in the video (POST /video/faces on the target, for
 * `target_face`) and in a group photo (on the face photo, for `source_face`), shown as
 * thumbnails in a radio group whose first choice is the server's default. */
import { $, state, slots, t, msg, el, fmtTime } from "./core.js";
import { api } from "./api.js";
import { showError, clearError, clearNotices } from "./notices.js";
import { thumbUrl } from "./media.js";
import { resetPreview } from "./preview.js";
import { renderSlot } from "./uploads.js";

const pickers = {
  // slot name -> picker
  video: { slot: "video", box: "target-faces", list: "target-faces-list", status: "target-faces-status", error: "target-faces-error", key: "targetFace", faces: null, busy: false, seq: 0 },
  face: { slot: "face", box: "source-faces", list: "source-faces-list", status: "source-faces-status", error: "source-faces-error", key: "sourceFace", faces: null, busy: false, seq: 0 },
};

export function resetFaces(slotName) {
  const p = pickers[slotName];
  if (!p) return;
  p.seq += 1;
  p.faces = null;
  p.busy = false;
  state[p.key] = null;
  $(p.list).replaceChildren();
  $(p.box).hidden = true;
  $(p.status).textContent = "";
  clearError(p.error);
  renderFindButton();
}

export function renderFindButton() {
  const v = slots.video;
  $("find-faces").hidden = !v.filepath || v.busy;
  $("find-faces").disabled = pickers.video.busy || state.unreachable;
}

async function findFaces(p, quiet) {
  const slot = slots[p.slot];
  if (!slot.filepath) return;
  if (!quiet) clearNotices();
  const seq = ++p.seq;
  p.busy = true;
  $(p.status).textContent = t(slot.fileKind === "video" ? "faces_busy_video" : "faces_busy");
  renderFindButton();
  try {
    const d = await api("POST", "/video/faces", { filepath: slot.filepath }, { context: { 404: "err_faces_missing" } });
    if (seq !== p.seq) return;
    p.faces = Array.isArray(d.faces) ? d.faces : [];
    renderPicker(p);
    if (!quiet && p.faces.length) {
      const first = $(p.list).querySelector("input");
      if (first) first.focus();
    }
  } catch (e) {
    if (seq === p.seq && !e.handled) {
      $(p.status).textContent = "";
      if (!quiet) showError(msg("err_faces", { msg: e.msg }), p.error);
    }
  } finally {
    if (seq === p.seq) {
      p.busy = false;
      renderFindButton();
    }
  }
}

/** A group photo: its people are looked up at once (a photo answers quickly). */
export function autoSourceFaces() {
  const slot = slots.face;
  const several = slot.faces > 1 || (slot.warnings || []).some((w) => w && w.code === "photo_several_faces");
  if (slot.fileKind === "image" && several) findFaces(pickers.face, true);
}

function faceText(p, face, i) {
  const share = Number(face.share);
  const parts = [t("person_n", { n: i + 1 })];
  // In a photo every face is there all the time: the share says something in a video only.
  if (slots[p.slot].fileKind === "video" && Number.isFinite(share) && share > 0) parts.push(t("face_share", { pct: Math.round(share <= 1 ? share * 100 : share) }));
  if (slots[p.slot].fileKind === "video" && Number.isFinite(Number(face.first_s))) {
    parts.push(t("face_seen", { from: fmtTime(Number(face.first_s)), to: fmtTime(Number(face.last_s)) }));
  }
  return parts.join(" · ");
}

function renderPicker(p) {
  const list = $(p.list);
  list.replaceChildren();
  const faces = p.faces;
  if (!faces) return;
  if (!faces.length) {
    $(p.box).hidden = true;
    $(p.status).textContent = t(p.slot === "video" ? "faces_none_video" : "faces_none");
    return;
  }
  $(p.status).textContent = t(p.slot === "video" ? "faces_found_video" : "faces_found", { n: faces.length });
  const name = p.box + "-choice";
  const option = (value, text, thumb) => {
    const label = el("label", "face-option");
    const input = el("input");
    input.type = "radio";
    input.name = name;
    input.value = value;
    input.checked = (state[p.key] || "") === value;
    input.addEventListener("change", () => {
      if (!input.checked) return;
      state[p.key] = value || null;
      resetPreview(); // the preview showed the other person
      if (p.slot === "face") renderSlot(slots.face); // "the largest face is used" no longer holds
    });
    label.append(input);
    if (thumb) {
      const img = el("img", "face-thumb");
      img.src = thumbUrl(thumb);
      img.alt = ""; // the label's text says who it is
      img.loading = "lazy";
      label.append(img);
    } else {
      label.append(el("span", "face-auto", "★"));
    }
    label.append(el("span", "face-text", text));
    list.append(label);
  };
  option("", t(p.slot === "video" ? "face_auto_video" : "face_auto"), null);
  faces.forEach((f, i) => option(String(f.face_id), faceText(p, f, i), f.thumbnail));
  $(p.box).hidden = false;
}

export function renderFaces() {
  for (const p of Object.values(pickers)) {
    if (p.busy) $(p.status).textContent = t(slots[p.slot].fileKind === "video" ? "faces_busy_video" : "faces_busy");
    else if (p.faces) renderPicker(p);
  }
  renderFindButton();
}

export function bindFaces() {
  $("find-faces").addEventListener("click", () => findFaces(pickers.video, false));
  window.addEventListener("faceswap:files", renderFindButton);
  window.addEventListener("faceswap:conn", renderFindButton);
}
