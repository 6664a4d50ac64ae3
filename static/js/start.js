// Course page: "Start a session" checks the camera first, so no session is created (and no
// learner waits on the instructor's screen) for a camera that cannot record.
import { CAMERA_MESSAGES, askCamera } from "./camera.js";

const form = document.getElementById("start-form");
const out = document.getElementById("camera-check");
let checked = false;

form.addEventListener("submit", async (ev) => {
  if (checked) return; // the camera worked: let the form create the session
  ev.preventDefault();
  const button = form.querySelector("button");
  button.disabled = true;
  out.hidden = false;
  out.dataset.state = "camera";
  out.textContent = "Checking your camera…";
  const { stream, error, detail } = await askCamera();
  if (stream) {
    stream.getTracks().forEach((t) => t.stop()); // the recording page asks for it again
    checked = true;
    out.textContent = "Camera works. Starting your session…";
    form.requestSubmit();
    return;
  }
  button.disabled = false;
  out.dataset.state = error;
  out.textContent = `${CAMERA_MESSAGES[error]}${detail ? " " + detail : ""} No session was started.`;
});
