// How numbers read on the pages: the same as the server's config/formats.py ("52 %").

// A 0–1 ratio or score as a whole percent, "—" for none.
export function percent(x) {
  return x == null || Number.isNaN(x) ? "—" : `${Math.round(x * 100)} %`;
}

// A duration as config/formats.py writes it: "42 s", "12 min 05 s", "1 h 02 min".
export function duration(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const pad = (n) => String(n).padStart(2, "0");
  if (h) return `${h} h ${pad(m)} min`;
  return m ? `${m} min ${pad(r)} s` : `${r} s`;
}

// Seconds into a session as m:ss (h:mm:ss past an hour).
export function clock(seconds) {
  const s = Math.max(Math.round(seconds), 0);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const pad = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${pad(m)}:${pad(r)}` : `${m}:${pad(r)}`;
}
