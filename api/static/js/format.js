// Formatting of numbers, times and run facts shared by the pages.

import { h } from "./dom.js";

export const FINISHED = ["succeeded", "failed", "cancelled"];

export function isFinished(status) {
  return FINISHED.includes(status);
}

/** A number with `digits` significant digits; "—" for null. */
export function num(value, digits = 4) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  if (value !== 0 && (Math.abs(value) < 1e-3 || Math.abs(value) >= 1e5)) return value.toExponential(2);
  return String(Number(value.toPrecision(digits)));
}

export function pct(value) {
  return value === null || value === undefined ? "—" : `${(value * 100).toFixed(1)}%`;
}

/** A metric as shown to people: accuracy and error rate as percentages. */
export function metric(value, name) {
  return name && (name.includes("accuracy") || name.includes("error_rate")) ? pct(value) : num(value);
}

export function metricLabel(name) {
  return (name || "").replace(/^(val|test)_/, "").replace("_", " ");
}

export function learningRate(value) {
  return value === null || value === undefined ? "—" : String(value);
}

/** Parse an ISO timestamp; a missing zone is read as UTC (the API stores UTC). */
export function parseTime(text) {
  if (!text) return null;
  const zoned = /[zZ]|[+-]\d\d:?\d\d$/.test(text) ? text : `${text}Z`;
  const t = Date.parse(zoned);
  return Number.isNaN(t) ? null : t;
}

/** 75 -> "1m 15s"; null -> "—". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, "0")}m`;
}

export function ago(text) {
  const t = parseTime(text);
  if (t === null) return "—";
  const s = (Date.now() - t) / 1000;
  if (s < 45) return "just now";
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return new Date(t).toLocaleDateString();
}

export function shortId(id) {
  return id ? id.slice(0, 8) : "—";
}

export function statusBadge(status, cancelRequested = false) {
  const text = cancelRequested && !isFinished(status) ? `${status} · cancelling` : status;
  return h("span", { class: `badge status-${status}`, "data-status": status }, text);
}

/**
 * Progress facts of a run: epochs done/total, elapsed seconds and the ETA from the mean epoch time.
 * `epochSeconds`: the seconds of every finished epoch, when known (else estimated from the elapsed time).
 */
export function progress(run, epochSeconds = null) {
  const done = run.epochs_done || 0;
  const total = run.epochs_total || 0;
  const start = parseTime(run.started_at);
  const end = parseTime(run.finished_at) ?? Date.now();
  const elapsed = start === null ? null : (end - start) / 1000;
  let eta = null;
  if (!isFinished(run.status) && done > 0 && total > done) {
    const mean = epochSeconds && epochSeconds.length
      ? epochSeconds.reduce((a, b) => a + b, 0) / epochSeconds.length
      : elapsed !== null ? elapsed / done : null;
    eta = mean === null ? null : mean * (total - done);
  }
  return { done, total, elapsed, eta, fraction: total ? Math.min(1, done / total) : 0 };
}

/** The validation value of an epoch row, whichever kind it belongs to (its one `val_<metric>` key). */
export function valOf(epoch) {
  if (!epoch) return null;
  const key = Object.keys(epoch).find((k) => k.startsWith("val_"));
  return key === undefined ? null : epoch[key];
}

/** `val_<metric>` of a run (each kind declares its metric; the API sends it as `run.metric`). */
export function valName(run) {
  return `val_${run.metric || "metric"}`;
}

/** A short label for a run's metric: "acc" for accuracy, "err" for error rate, else its name. */
export function metricShort(run) {
  return { accuracy: "acc", error_rate: "err" }[run.metric] || String(run.metric || "metric").replace(/_/g, " ");
}
