// How values from the API are shown: money, counts, times, durations. Pure functions (unit-tested in node).

export function usd(value, digits) {
  if (value === null || value === undefined) return "—";
  const n = Number(value);
  const abs = Math.abs(n);
  let text;
  if (digits !== undefined) text = abs.toFixed(digits);
  else if (abs >= 1 || abs === 0) text = abs.toFixed(2);
  else text = abs.toFixed(6).replace(/0+$/, "").replace(/\.(\d)$/, ".$10"); // cents and fractions of them
  return (n < 0 ? "-$" : "$") + text;
}

export function price(value) {
  return value === null || value === undefined ? "—" : "$" + Number(value).toFixed(4).replace(/\.?0+$/, "");
}

export function count(value) {
  if (value === null || value === undefined) return "—";
  return Number(value).toLocaleString("en-US");
}

export function ms(value) {
  if (value === null || value === undefined) return "—";
  const n = Number(value);
  return n >= 1000 ? (n / 1000).toFixed(2) + " s" : Math.round(n) + " ms";
}

/** Epoch seconds (or an ISO string) -> "2026-12-02 06:47" in the browser's time zone. */
export function time(value) {
  if (value === null || value === undefined || value === "") return "—";
  const d = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

/** The label of a usage bucket starting at epoch seconds `t`. */
export function bucketLabel(t, bucket) {
  const s = time(t);
  return bucket === "day" ? s.slice(0, 10) : s.slice(5);
}

/** An <input type="datetime-local"> value -> epoch seconds, or "" when empty. */
export function localToEpoch(value) {
  if (!value) return "";
  const t = new Date(value).getTime();
  return Number.isNaN(t) ? "" : Math.floor(t / 1000);
}

/** Epoch seconds -> an <input type="datetime-local"> value. */
export function epochToLocal(t) {
  if (t === null || t === undefined || t === "") return "";
  const d = new Date(Number(t) * 1000);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

/** "gpt-4.1, claude-*" -> ["gpt-4.1", "claude-*"]. */
export function splitList(text) {
  return String(text || "").split(/[\s,]+/).filter(Boolean);
}

/** A number input's value -> a number, or null when empty. */
export function numberOrNull(text) {
  const s = String(text ?? "").trim();
  if (!s) return null;
  const n = Number(s);
  return Number.isFinite(n) ? n : null;
}
