// Label review: one key per label (the buttons' data-keys), so a reviewer can go through the
// queue without the mouse. The buttons and the skip link work without this script too.
const form = document.getElementById("review-form");
let sent = false;

function target(key) {
  for (const el of document.querySelectorAll("[data-keys]")) {
    if (el.dataset.keys.split(" ").includes(key)) return el;
  }
  return null;
}

if (form) {
  form.addEventListener("submit", () => { sent = true; });
  document.addEventListener("keydown", (e) => {
    if (sent || e.repeat || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.target.closest && e.target.closest("input, textarea, select")) return;
    const el = target(e.key.toLowerCase());
    if (!el) return;
    e.preventDefault();
    sent = true; // one label per reading: a second key before the next page would re-label
    el.classList.add("pressed");
    el.click();
  });
}
