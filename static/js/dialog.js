/* One confirmation dialog (a modal <dialog>: focus moves into it, Escape answers no). */
import { $, render } from "./core.js";

let pending = null; // {message, yes, resolve}

/** Ask the user; resolves true when they confirm. `yes` is the message of the button. */
export function confirmAction(message, yes) {
  if (pending) pending.resolve(false);
  const dlg = $("confirm");
  return new Promise((resolve) => {
    pending = { message: message, yes: yes, resolve: resolve };
    renderDialog();
    if (!dlg.open) dlg.showModal();
    $("confirm-no").focus();
  });
}

function answer(ok) {
  const p = pending;
  pending = null;
  const dlg = $("confirm");
  if (dlg.open) dlg.close();
  if (p) p.resolve(ok);
}

export function renderDialog() {
  if (!pending) return;
  $("confirm-text").textContent = render(pending.message);
  $("confirm-yes").textContent = render(pending.yes);
}

export function bindDialog() {
  $("confirm-yes").addEventListener("click", () => answer(true));
  $("confirm-no").addEventListener("click", () => answer(false));
  $("confirm").addEventListener("close", () => answer(false)); // Escape
}
