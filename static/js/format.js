// One way to write numbers on every page: engagement as a whole percent ("52 %").
export const percent = (x) => (x == null ? "—" : `${Math.round(x * 100)} %`);

// A duration in words: "45 s" under a minute and a half, then "2:05 min".
export const duration = (ms) => {
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 90 ? `${s} s` : `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")} min`;
};
