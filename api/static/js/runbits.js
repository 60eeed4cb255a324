// Pieces of a run shown on several pages: hyper-parameters, progress, latest metrics, cancel/promote.

import { api } from "./api.js";
import { banner, h } from "./dom.js";
import { duration, isFinished, learningRate, metric, metricShort, num, progress, valName, valOf } from "./format.js";

/** The key hyper-parameters as small chips. */
export function hyperParams(run) {
  const c = run.config || {};
  const chips = [
    ["lr", learningRate(c.learning_rate)],
    ["epochs", c.epochs ?? run.epochs_total],
    ["batch", c.batch_size],
  ];
  if (run.model === "seq2seq") {
    chips.push(["attention", c.attention ? "on" : "off"], ["hidden", c.hidden_size]);
  } else {
    chips.push(["optimizer", c.optimizer]);
  }
  if (c.limit) chips.push(["limit", c.limit]);
  return h("div", { class: "chips" }, chips.map(([k, v]) =>
    h("span", { class: "chip", "data-param": k }, h("span", { class: "chip-key" }, k), " ", String(v ?? "—"))));
}

/** Progress bar with "epoch k of n", elapsed time and ETA. */
export function progressView(run, epochSeconds = null) {
  const p = progress(run, epochSeconds);
  const label = p.total ? `epoch ${p.done} of ${p.total}` : "—";
  const bar = h("div", {
    class: `bar status-${run.status}`, role: "progressbar", "aria-valuemin": "0",
    "aria-valuemax": String(p.total), "aria-valuenow": String(p.done), "aria-label": label,
  }, h("span", { style: { width: `${(p.fraction * 100).toFixed(1)}%` } }));
  const facts = [];
  if (p.elapsed !== null) facts.push(`${duration(p.elapsed)} elapsed`);
  if (p.eta !== null) facts.push(`ETA ${duration(p.eta)}`);
  if (run.status === "queued") facts.push("waiting for a worker");
  return h("div", { class: "progress" },
    h("div", { class: "progress-label" }, h("strong", { class: "epochs" }, label)),
    bar,
    h("div", { class: "muted small" }, facts.join(" · ") || "\u00a0"));
}

/** Latest training loss, validation metric and (once known) the test metric. */
export function latestMetrics(run) {
  const e = run.latest_epoch;
  const val = valName(run);
  const items = [
    ["loss", e ? num(e.train_loss) : "—"],
    [`val ${metricShort(run)}`, e ? metric(valOf(e), val) : "—"],
  ];
  if (run.test_metric !== null && run.test_metric !== undefined) {
    items.push([`test ${metricShort(run)}`, metric(run.test_metric, run.test_metric_name)]);
  }
  return h("dl", { class: "kv-inline" }, items.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

/**
 * Cancel (queued/running) and promote (succeeded) buttons. `onChange(run?)` is called after a
 * successful action (with the updated run for a cancel).
 */
export function runActions(run, { onChange, promoted = false } = {}) {
  const buttons = [];
  if (!isFinished(run.status) && !run.cancel_requested) {
    buttons.push(h("button", {
      type: "button", class: "btn small danger", "data-action": "cancel",
      "aria-label": `Cancel run ${run.id.slice(0, 8)}`,
      onclick: async (event) => {
        const btn = event.currentTarget;
        btn.disabled = true;
        try {
          const updated = await api.cancel(run.id);
          banner(`Run ${run.id.slice(0, 8)}: ${updated.status === "cancelled" ? "cancelled" : "cancel requested"}.`,
            "success");
          if (onChange) onChange(updated);
        } catch (err) {
          banner(`Cancel failed: ${err.message}`, "error");
          btn.disabled = false;
        }
      },
    }, "Cancel"));
  }
  if (run.status === "succeeded" && !promoted) {
    buttons.push(h("button", {
      type: "button", class: "btn small", "data-action": "promote",
      title: `serve ${run.model} requests with this run`,
      "aria-label": `Promote run ${run.id.slice(0, 8)}`,
      onclick: async (event) => {
        const btn = event.currentTarget;
        btn.disabled = true;
        try {
          await api.promote(run.model, run.id);
          banner(`Run ${run.id.slice(0, 8)} now serves ${run.model} predictions.`, "success");
          if (onChange) onChange(null);
        } catch (err) {
          banner(`Promote failed: ${err.message}`, "error");
          btn.disabled = false;
        }
      },
    }, "Promote"));
  }
  return h("div", { class: "actions" }, buttons);
}

/** Which run serves each model now: {cnn: {id, promoted}, seq2seq: {id, promoted}}. */
export async function servingRuns() {
  const models = await api.models();
  return Object.fromEntries(models.map((m) => [m.model, { id: m.serving_run_id, promoted: m.promoted_run_id }]));
}

export const SERVING_TITLE = {
  promoted: "promoted: this run answers the model's requests",
  best: "the best succeeded run answers the model's requests until one is promoted",
};

/** "promoted" | "best" | null: how `run` serves its model, per servingRuns(). */
export function servingRole(serving, run) {
  const s = serving[run.model];
  if (!s || s.id !== run.id) return null;
  return s.promoted === run.id ? "promoted" : "best";
}
