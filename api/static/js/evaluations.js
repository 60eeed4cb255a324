// A run's evaluations (POST/GET /runs/{id}/evaluations): the form that asks for one, the table of them
// (followed live while they run), the examples of the selected one, and the run's best epoch with its
// checkpoints. Used by the run page.

import { api, links } from "./api.js";
import { errorBox, h, replace } from "./dom.js";
import { confusionHeatmap, purge } from "./charts.js";
import { duration, isFinished, metric, metricLabel, pct, shortId, statusBadge, valName, valOf } from "./format.js";
import { followEvaluation } from "./live.js";

// At most this many evaluations are followed through their own event stream at once (browsers allow
// ~6 connections per host; the run page may hold one for the run itself).
const MAX_STREAMS = 2;

/** 0.42 -> "0.4 s"; longer ones as "1m 15s". */
function seconds(value) {
  if (value === null || value === undefined) return "—";
  return value < 10 ? `${value.toFixed(1)} s` : duration(value);
}

/** "greedy", "beam 5" or "beam 5 · α 0.6"; "—" for an image model's evaluation. */
export function decodingText(e) {
  if (!e.decoding) return "—";
  if (e.decoding !== "beam") return e.decoding;
  return `beam ${e.beam_size ?? "?"}${e.length_penalty ? ` · α ${e.length_penalty}` : ""}`;
}

/** "best · epoch 3", or "last · epoch 5 (no best kept)" when best was asked for and last was scored. */
export function checkpointText(e) {
  const used = e.checkpoint_used || e.checkpoint;
  const epoch = e.checkpoint_epoch !== null && e.checkpoint_epoch !== undefined ? ` · epoch ${e.checkpoint_epoch}` : "";
  const fallback = e.checkpoint_used && e.checkpoint_used !== e.checkpoint ? ` (asked: ${e.checkpoint})` : "";
  return `${used}${epoch}${fallback}`;
}

/** The metric of a finished evaluation as shown to people: "error rate 41.2%". */
export function resultText(e) {
  if (e.value === null || e.value === undefined) return "—";
  return `${metricLabel(e.metric)} ${metric(e.value, e.metric)}`;
}

/** The best epoch of a run: the API's `best_epoch` when it sends one, else the best validation epoch. */
export function bestEpoch(run, epochs) {
  if (run.best_epoch !== undefined && run.best_epoch !== null) {
    const row = epochs.find((e) => e.epoch === run.best_epoch);
    return { epoch: run.best_epoch, value: row ? valOf(row) : run.best_val_metric };
  }
  let best = null;
  const higher = run.metric === "accuracy";
  for (const row of [...epochs].sort((a, b) => a.epoch - b.epoch)) {
    const v = valOf(row);
    if (v === null || v === undefined || Number.isNaN(v)) continue;
    if (!best || (higher ? v > best.value : v < best.value)) best = { epoch: row.epoch, value: v };
  }
  return best;
}

function evalProgress(e) {
  const total = e.total || 0;
  const done = e.done || 0;
  const fraction = total ? Math.min(1, done / total) : 0;
  const label = total ? `${done} of ${total} examples` : e.status === "queued" ? "waiting for a worker" : "starting";
  return h("div", { class: "progress eval-progress" },
    h("div", {
      class: `bar status-${e.status}`, role: "progressbar", "aria-valuemin": "0", "aria-valuemax": String(total),
      "aria-valuenow": String(done), "aria-label": label,
    }, h("span", { style: { width: `${(fraction * 100).toFixed(1)}%` } })),
    h("div", { class: "muted small" }, label));
}

function sentenceTable(rows, caption, id) {
  if (!rows || !rows.length) return h("p", { class: "muted small" }, "No sentences.");
  return h("div", { class: "table-wrap" }, h("table", { class: "sentences", id },
    h("caption", { class: "sr-only" }, caption),
    h("thead", {}, h("tr", {}, ["#", "Source", "Reference", "Hypothesis", "Error"]
      .map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows.map((r) => h("tr", {},
      h("td", { class: "muted mono" }, String(r.index)),
      h("td", {}, r.source), h("td", {}, r.reference),
      h("td", { class: r.hypothesis === r.reference ? "ok-text" : null },
        r.hypothesis ? r.hypothesis : h("span", { class: "muted" }, "(empty)")),
      h("td", { class: "mono nowrap" }, pct(r.error)))))));
}

/**
 * The examples of a finished evaluation into `box`: CNN: the confusion matrix (heatmap), per-class
 * accuracy and the most confident mistakes; seq2seq: the worst and sampled sentences. Returns the chart
 * element to purge, if any.
 */
export function drawDetails(box, e) {
  const d = e.details || {};
  const title = h("h3", {}, `Evaluation ${shortId(e.id)} · ${e.dataset} ${e.split} · ${checkpointText(e)}`,
    e.decoding ? ` · ${decodingText(e)}` : "", ` · ${resultText(e)} on ${e.n ?? "?"} examples`);
  if (e.status !== "succeeded") {
    replace(box, title, e.error ? errorBox(e.error, `This evaluation ${e.status}:`)
      : h("p", { class: "muted" }, `This evaluation is ${e.status}.`));
    return null;
  }
  if (Array.isArray(d.confusion)) {
    const chart = h("div", { class: "chart confusion", id: "confusion-chart", role: "img",
      "aria-label": "confusion matrix: rows are the true classes, columns the predicted ones" });
    const perClass = d.per_class || [];
    const mistakes = d.mistakes || [];
    replace(box, title,
      h("div", { class: "grid two" },
        h("div", {}, h("h3", {}, "Confusion matrix"), chart),
        h("div", {}, h("h3", {}, "Per-class accuracy"),
          h("table", { class: "per-class", id: "per-class" },
            h("thead", {}, h("tr", {}, ["Class", "Examples", "Accuracy"].map((t) => h("th", { scope: "col" }, t)))),
            h("tbody", {}, perClass.map((c) => h("tr", { dataset: { class: c.class } },
              h("td", { class: "mono strong" }, String(c.class)), h("td", {}, String(c.n)),
              h("td", {}, h("div", { class: "acc-cell" },
                h("span", { class: "acc-bar" }, h("span", { style: { width: `${((c.accuracy || 0) * 100).toFixed(1)}%` } })),
                h("span", { class: "mono" }, pct(c.accuracy)))))))))),
      h("h3", {}, "Most confident mistakes"),
      mistakes.length
        ? h("div", { class: "mistakes", id: "mistakes" }, mistakes.map((m) => h("figure", { class: "mistake" },
          h("img", { src: m.image_png, alt: `example ${m.index}: true ${m.true}, predicted ${m.predicted}`,
            class: "pixelated", width: "56", height: "56" }),
          h("figcaption", {}, h("span", { class: "strong" }, `${m.true} → ${m.predicted}`),
            h("span", { class: "muted" }, ` ${pct(m.confidence)}`)))))
        : h("p", { class: "muted small" }, "No mistakes."));
    try {
      confusionHeatmap(chart, d.confusion, d.classes || d.confusion.map((_, i) => String(i)));
    } catch (err) {
      replace(chart, errorBox(err));
    }
    return chart;
  }
  replace(box, title,
    h("h3", {}, "Worst sentences"), sentenceTable(d.worst, "the sentences with the highest error", "worst-sentences"),
    h("h3", {}, "Sample sentences"), sentenceTable(d.sample, "a fixed random sample of sentences", "sample-sentences"));
  return null;
}

/**
 * The "Evaluations" card of a run page. `setRun(run, epochs)` redraws it for the run's current state;
 * `close()` ends its event streams.
 */
export function evaluationsCard(initialRun, { datasets = [] } = {}) {
  let run = initialRun;
  let epochs = [];
  let list = [];
  let selected = null; // evaluation id whose details are shown
  let detailChart = null;
  let stopped = false;
  const streams = new Map(); // evaluation id -> close()
  const seq2seq = run.model !== "cnn";

  const bestLine = h("p", { class: "best-epoch", id: "best-epoch" });
  const live = h("p", { class: "muted small", id: "eval-live", "aria-live": "polite" });
  const listError = h("div", { class: "live-error" });
  const tableBox = h("div", { class: "table-wrap", id: "eval-list" });
  const details = h("div", { class: "eval-details", id: "eval-details" });
  const formBox = h("div");

  // ---- the form ----------------------------------------------------------------------------------
  const field = (name, label, input, hint = null) => h("div", { class: "field" },
    h("label", { for: `eval-${name}` }, label), input,
    hint ? h("p", { class: "hint", id: `eval-${name}-hint` }, hint) : null,
    h("p", { class: "field-error", "data-error-for": name, hidden: true }));
  const select = (name, options, value) => h("select", { id: `eval-${name}`, name },
    options.map(([v, t]) => h("option", { value: v, selected: v === value }, t)));
  const text = (name, value, hint) => h("input", { type: "text", inputmode: "decimal", id: `eval-${name}`, name,
    value, autocomplete: "off", "aria-describedby": hint ? `eval-${name}-hint` : null });

  const others = datasets.filter((d) => d.name !== run.dataset && (d.models || [d.model]).includes(run.model));
  const inputs = {
    split: select("split", [["test", "test"], ["val", "validation"]], "test"),
    checkpoint: select("checkpoint", [["best", "best epoch"], ["last", "last epoch"]], "best"),
    dataset: select("dataset", [["", run.dataset], ...others.map((d) => [d.name, d.name])], ""),
    limit: text("limit", "", "empty = the whole split"),
  };
  if (seq2seq) {
    inputs.decoding = select("decoding", [["greedy", "greedy"], ["beam", "beam search"]], "greedy");
    inputs.beam_size = text("beam_size", "5", "hypotheses kept per step");
    inputs.length_penalty = text("length_penalty", "0", "GNMT α, 0 = none");
  }
  const beamFields = seq2seq ? [field("beam_size", "Beam size", inputs.beam_size, "hypotheses kept per step"),
    field("length_penalty", "Length penalty", inputs.length_penalty, "GNMT α, 0 = none")] : [];
  const syncBeam = () => {
    if (!seq2seq) return;
    const beam = inputs.decoding.value === "beam";
    for (const f of beamFields) f.hidden = !beam;
  };
  if (seq2seq) inputs.decoding.addEventListener("change", syncBeam);
  syncBeam();
  const formAlert = h("div", { id: "eval-form-error", "aria-live": "assertive" });
  const submit = h("button", { type: "submit", class: "btn primary", id: "eval-submit" }, "Evaluate");
  const form = h("form", { class: "form eval-form", id: "eval-form", novalidate: true, onsubmit: onSubmit },
    h("div", { class: "fields compact" },
      field("split", "Split", inputs.split),
      field("checkpoint", "Checkpoint", inputs.checkpoint),
      seq2seq ? field("decoding", "Decoding", inputs.decoding) : null,
      beamFields,
      field("dataset", "Dataset", inputs.dataset, "the run's own, or another of its kind"),
      field("limit", "Examples (limit)", inputs.limit, "empty = the whole split")),
    formAlert,
    h("div", { class: "form-actions" }, submit));

  const number = (input) => {
    const t = input.value.trim();
    if (t === "") return undefined;
    const n = Number(t);
    return Number.isFinite(n) ? n : t; // the API judges anything else
  };

  function showErrors(err) {
    for (const p of form.querySelectorAll("[data-error-for]")) { p.hidden = true; p.textContent = ""; }
    for (const input of Object.values(inputs)) input.removeAttribute("aria-invalid");
    if (!err) { replace(formAlert); return; }
    for (const { field: name, message } of err.errors || []) {
      const p = form.querySelector(`[data-error-for="${name}"]`);
      if (p) { p.textContent = message; p.hidden = false; }
      if (inputs[name]) inputs[name].setAttribute("aria-invalid", "true");
    }
    replace(formAlert, errorBox(err, "The evaluation was not started:"));
  }

  async function onSubmit(event) {
    event.preventDefault();
    const body = { split: inputs.split.value, checkpoint: inputs.checkpoint.value };
    if (inputs.dataset.value) body.dataset = inputs.dataset.value;
    const limit = number(inputs.limit);
    if (limit !== undefined) body.limit = limit;
    if (seq2seq) {
      body.decoding = inputs.decoding.value;
      if (body.decoding === "beam") {
        body.beam_size = number(inputs.beam_size);
        body.length_penalty = number(inputs.length_penalty);
      }
    }
    submit.disabled = true;
    submit.textContent = "Starting…";
    try {
      const created = await api.evaluate(run.id, body);
      showErrors(null);
      const { evaluation_id: _, ...evaluation } = created;
      upsert(evaluation);
      live.textContent = created.cached
        ? `Evaluation ${shortId(evaluation.id)}: an identical earlier request already answered it.`
        : `Evaluation ${shortId(evaluation.id)} ${evaluation.status}: following it live.`;
      await select_(evaluation.id);
      follow();
    } catch (err) {
      showErrors(err);
    } finally {
      submit.disabled = false;
      submit.textContent = "Evaluate";
    }
  }

  // ---- the list, followed live ---------------------------------------------------------------------
  function upsert(e) {
    const i = list.findIndex((x) => x.id === e.id);
    if (i >= 0) list[i] = { ...list[i], ...e, details: e.details ?? list[i].details };
    else list.unshift(e);
    drawList();
  }

  function drawList() {
    if (!list.length) {
      replace(tableBox, h("p", { class: "muted small empty-note" }, "No evaluations of this run yet."));
      return;
    }
    replace(tableBox, h("table", { class: "eval-table", id: "eval-table" },
      h("caption", { class: "sr-only" }, "Evaluations of this run, newest first"),
      h("thead", {}, h("tr", {}, ["Status", "Checkpoint", "Data", "Decoding", "Result", "Examples", "Time", ""]
        .map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, list.map(rowFor))));
  }

  function rowFor(e) {
    let action = null;
    if (isFinished(e.status)) {
      action = h("button", { type: "button", class: "btn small", "data-action": "show",
        "aria-pressed": String(e.id === selected), onclick: () => select_(e.id) }, "Details");
    } else if (!e.cancel_requested) {
      action = h("button", { type: "button", class: "btn small danger", "data-action": "cancel-evaluation",
        onclick: (ev) => cancel(e, ev.currentTarget) }, "Cancel");
    }
    return h("tr", { class: e.id === selected ? "selected" : null, dataset: { evaluationId: e.id, status: e.status } },
      h("td", {}, statusBadge(e.status, e.cancel_requested), e.cached ? h("span", { class: "badge" }, "cached") : null,
        isFinished(e.status) ? null : evalProgress(e)),
      h("td", { class: "nowrap" }, checkpointText(e)),
      h("td", {}, `${e.dataset} · ${e.split}`, e.limit ? h("div", { class: "muted small" }, `first ${e.limit}`) : null),
      h("td", { class: "nowrap" }, decodingText(e)),
      h("td", { class: "mono strong nowrap", "data-result": "" }, resultText(e)),
      h("td", {}, e.n ?? "—"),
      h("td", { class: "nowrap" }, seconds(e.seconds)),
      h("td", { class: "actions-cell" }, h("div", { class: "actions" }, action)));
  }

  async function cancel(e, button) {
    button.disabled = true;
    try {
      upsert(await api.cancelEvaluation(e.id));
      follow();
    } catch (err) {
      button.disabled = false;
      replace(listError, errorBox(err, "Cancel failed:"));
    }
  }

  async function select_(id) {
    selected = id;
    drawList();
    const known = list.find((e) => e.id === id);
    if (!known) return;
    if (!isFinished(known.status)) {
      replace(details, h("p", { class: "muted" }, "The examples appear here when this evaluation finishes."));
      return;
    }
    try {
      const full = known.details ? known : await api.evaluation(id);
      if (stopped || selected !== id) return;
      upsert(full);
      purge(detailChart);
      detailChart = drawDetails(details, full);
      details.dataset.evaluationId = id;
    } catch (err) {
      replace(details, errorBox(err, "Could not load this evaluation:"));
    }
  }

  function follow() {
    for (const [id, close] of streams) {
      const e = list.find((x) => x.id === id);
      if (!e || isFinished(e.status)) { close(); streams.delete(id); }
    }
    const active = list.filter((e) => !isFinished(e.status) && !streams.has(e.id));
    for (const e of active.slice(0, Math.max(0, MAX_STREAMS - streams.size))) {
      streams.set(e.id, followEvaluation(e.id, {
        onUpdate: (data) => {
          if (stopped) return;
          upsert(data);
          if (isFinished(data.status)) {
            streams.delete(data.id);
            const result = data.value !== null && data.value !== undefined
              ? `: ${resultText(data)} on ${data.n} examples` : "";
            live.textContent = `Evaluation ${shortId(data.id)} ${data.status}${result}.`;
            if (selected === data.id) select_(data.id);
            follow();
          }
        },
        onBroken: () => {
          streams.delete(e.id);
          if (!stopped) setTimeout(refresh, 2000);
        },
      }));
    }
  }

  async function refresh() {
    if (stopped) return;
    try {
      const fresh = await api.evaluations(run.id);
      if (stopped) return;
      list = fresh.map((e) => ({ ...e, details: (list.find((x) => x.id === e.id) || {}).details }));
      replace(listError);
      drawList();
      follow();
    } catch (err) {
      if (!stopped) replace(listError, errorBox(err, "Could not list the evaluations:"));
    }
  }

  // ---- best epoch and checkpoints --------------------------------------------------------------------
  function drawBest() {
    const best = bestEpoch(run, epochs);
    const val = valName(run);
    const finished = isFinished(run.status) && run.status !== "failed";
    const noBest = finished && run.best_epoch === null && "best_epoch" in run;
    replace(bestLine,
      h("span", { class: "stat-label" }, "Best epoch "),
      best ? h("strong", { id: "best-epoch-value" }, `${best.epoch}`) : h("strong", {}, "—"),
      best ? h("span", { class: "muted" },
        ` of ${run.epochs_total} · validation ${metricLabel(val)} ${metric(best.value, val)}`)
        : h("span", { class: "muted" }, " (no finished epoch yet)"),
      finished ? [
        " · ",
        noBest ? h("span", { class: "muted small" }, "no best checkpoint kept")
          : h("a", { href: links.checkpoint(run.id, "best"), download: "", id: "checkpoint-best" }, "best checkpoint"),
        " · ",
        h("a", { href: links.checkpoint(run.id, "last"), download: "", id: "checkpoint-last" }, "last checkpoint"),
      ] : null);
  }

  function drawForm() {
    if (run.status === "succeeded") {
      replace(formBox, form);
    } else if (isFinished(run.status)) {
      replace(formBox, h("p", { class: "muted" }, `The run ${run.status}: there is no model to evaluate.`));
    } else {
      replace(formBox, h("p", { class: "muted" }, "A checkpoint can be evaluated once the run has succeeded."));
    }
  }

  const el = h("div", { class: "card", id: "evaluations" },
    h("h2", {}, "Evaluations"), bestLine, formBox, live, listError, tableBox, details);

  let drawnStatus = null;
  return {
    el,
    setRun(fresh, epochRows) {
      run = fresh;
      epochs = epochRows;
      drawBest();
      if (drawnStatus !== run.status) {
        drawnStatus = run.status;
        drawForm();
      }
    },
    refresh,
    close() {
      stopped = true;
      for (const close of streams.values()) close();
      streams.clear();
      purge(detailChart);
    },
  };
}
