// The webcam, asked for in one way on the course page (before a session is created) and on
// the recording page, with what went wrong in plain words.
export const CAMERA_MESSAGES = {
  "camera-denied": "Camera access was denied. Allow the camera for this site in your browser settings, then press Start again.",
  "no-camera": "No camera was found on this device.",
  "camera-busy": "The camera is in use by another program (a video call?) or not working. Close that program, then press Start again.",
  "camera-insecure": "The browser only allows the camera on a secure page (https://). Ask whoever runs this site to serve it over HTTPS.",
  "camera-error": "The camera could not be started.",
};

const CAMERA_ERRORS = {
  NotAllowedError: "camera-denied", SecurityError: "camera-denied",
  NotFoundError: "no-camera", OverconstrainedError: "no-camera",
  NotReadableError: "camera-busy", AbortError: "camera-busy",
};

// {stream} once the camera works, else {error: a CAMERA_MESSAGES key, detail}.
export async function askCamera() {
  if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    return { error: "camera-insecure", detail: "" };
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false,
    });
    return { stream };
  } catch (err) {
    const name = (err && err.name) || "";
    const kind = CAMERA_ERRORS[name];
    return { error: kind || "camera-error", detail: kind ? "" : `(${name || err})` };
  }
}
