// The time window every view shares: a relative range (last 15 minutes … 7 days) or a custom
// from/to, plus auto-refresh. It lives in the URL (range=, from=, to=, refresh=).
import type { Location } from "./router";

export const RANGES: { key: string; label: string; ms: number }[] = [
  { key: "15m", label: "Last 15 minutes", ms: 15 * 60_000 },
  { key: "1h", label: "Last hour", ms: 3_600_000 },
  { key: "6h", label: "Last 6 hours", ms: 6 * 3_600_000 },
  { key: "24h", label: "Last 24 hours", ms: 24 * 3_600_000 },
  { key: "7d", label: "Last 7 days", ms: 7 * 24 * 3_600_000 },
];

export const REFRESH: { key: string; label: string; seconds: number }[] = [
  { key: "", label: "Auto-refresh off", seconds: 0 },
  { key: "10s", label: "Every 10 s", seconds: 10 },
  { key: "30s", label: "Every 30 s", seconds: 30 },
  { key: "1m", label: "Every minute", seconds: 60 },
];

export const DEFAULT_RANGE = "1h";

export interface Window {
  from: number; // unix ms
  to: number;
  label: string;
}

function parseTime(text: string | null): number | null {
  if (!text) return null;
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text);
  const parsed = Date.parse(text);
  return Number.isNaN(parsed) ? null : parsed;
}

/** The window the URL asks for, evaluated now (relative ranges move with the clock). */
export function windowOf(location: Location, now = Date.now()): Window {
  const from = parseTime(location.params.get("from"));
  const to = parseTime(location.params.get("to"));
  if (from !== null) {
    return { from, to: to ?? now, label: "custom" };
  }
  const key = location.params.get("range") || DEFAULT_RANGE;
  const range = RANGES.find((r) => r.key === key) ?? RANGES[1];
  return { from: now - range.ms, to: now, label: range.label };
}

export function refreshSeconds(location: Location): number {
  const key = location.params.get("refresh") || "";
  return REFRESH.find((r) => r.key === key)?.seconds ?? 0;
}

/** A datetime-local input's value (local time, minutes) for a unix ms time, and back. */
export function toLocalInput(msTime: number): string {
  const d = new Date(msTime);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function fromLocalInput(text: string): number | null {
  if (!text) return null;
  const parsed = new Date(text).getTime();
  return Number.isNaN(parsed) ? null : parsed;
}
