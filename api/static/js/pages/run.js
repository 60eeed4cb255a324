// Run detail: live training-loss and validation curves, progress, config, final test metric, links, and
// the run's evaluations (best epoch, checkpoints, the form and the results: see ../evaluations.js).

import { api, links } from "../api.js";
import { errorBox, h, replace } from "../dom.js";
import { lineChart, purge } from "../charts.js";
import { evaluationsCard } from "../evaluations.js";
import { isFinished, metric, metricLabel, num, parseTime, shortId, statusBadge, valName, valOf } from "../format.js";
import { followRun } from "../live.js";
import { hyperParams, progressView, runActions, SERVING_TITLE, servingRole, servingRuns } from "../runbits.js";

const FINAL_WORDS = {
  succeeded: "The run succeeded.", failed: "The run failed.", cancelled: "The run was cancelled.",
};
// TrainConfig fields that mean nothing for a CNN run (left out of its configuration table).
const SEQ2SEQ_ONLY = ["attention", "hidden_size", "max_length", "direction"];

export async function render(root, { id }) {
  let run = await api.run(id);
  const epochs = new Map(); // epoch -> row
  const metrics = await api.metrics(id);
  for (const e of metrics.epochs) epochs.set(e.epoch, e);
  let serving = {};
  try {
    serving = await servingRuns();
  } catch {
    serving = {};
  }
  let datasets = [];
  try {
    datasets = await api.datasets();
  } catch {
    datasets = []; // the form offers the run's own dataset only
  }
  const evaluations = evaluationsCard(run, { datasets });

  const head = h("div", { class: "page-head" });
  const summary = h("div", { class: "stats" });
  const errorSlot = h("div");
  const lossChart = h("div", { class: "chart", id: "loss-chart", role: "img", "aria-label": "training loss per epoch" });
  const valChart = h("div", { class: "chart", id: "val-chart", role: "img", "aria-label": "validation metric per epoch" });
  const linkList = h("div", { class: "links-row" });
  const config = h("div");
  const liveNote = h("p", { class: "muted small", "aria-live": "polite" });

  replace(root, h("section", { class: "page" },
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: "#/runs" }, "Runs"), " / ",
      h("span", { class: "mono" }, shortId(id))),
    head, errorSlot, summary,
    h("div", { class: "grid two" },
      h("div", { class: "card" }, h("h2", {}, "Training loss"), lossChart),
      h("div", { class: "card" }, h("h2", {}, `Validation ${run.model === "cnn" ? "accuracy" : "error rate"}`), valChart)),
    liveNote,
    linkList,
    evaluations.el,
    h("div", { class: "card" }, h("h2", {}, "Configuration"), config)));

  const drawHead = () => {
    const role = servingRole(serving, run);
    replace(head,
      h("div", {},
        h("h1", {}, h("span", { class: `model-tag ${run.model}` }, run.model), " run ",
          h("span", { class: "mono" }, shortId(run.id))),
        h("p", { class: "muted" }, `${run.dataset}`, run.sweep_id
          ? [" · part of ", h("a", { href: `#/sweeps/${run.sweep_id}` }, "a learning-rate sweep")] : null)),
      h("div", { class: "toolbar" }, h("span", { id: "run-status" }, statusBadge(run.status, run.cancel_requested)),
        role ? h("span", { class: "badge serving", title: SERVING_TITLE[role] }, "serving") : null,
        runActions(run, { promoted: role === "promoted", onChange: reload })));
    replace(errorSlot, run.status === "failed" && run.error
      ? errorBox(run.error, "This run failed:") : null);
  };

  const drawSummary = () => {
    const rows = [...epochs.values()];
    const val = valName(run);
    const values = rows.map(valOf).filter((v) => v !== null && v !== undefined);
    const fromEpochs = values.length ? (run.model === "cnn" ? Math.max(...values) : Math.min(...values)) : null;
    const best = fromEpochs ?? run.best_val_metric;
    const card = (label, value, extra = null, attrs = {}, valueClass = "stat-value") =>
      h("div", { class: "stat", ...attrs }, h("div", { class: "stat-label" }, label),
        h("div", { class: valueClass }, value), extra ? h("div", { class: "muted small" }, extra) : null);
    replace(summary,
      h("div", { class: "stat wide" }, h("div", { class: "stat-label" }, "Progress"),
        progressView(run, rows.map((r) => r.seconds))),
      card("Latest training loss", rows.length ? num(rows[rows.length - 1].train_loss) : "—"),
      card(`Best validation ${metricLabel(val)}`, metric(best, val)),
      card(`Test ${metricLabel(run.test_metric_name)}`, metric(run.test_metric, run.test_metric_name),
        run.test_metric === null && !isFinished(run.status) ? "known when the run finishes" : null,
        { id: "test-metric" }),
      card("Worker", run.worker ? run.worker.split("@")[0] : "—", run.device ? `on ${run.device}` : null, {},
        "stat-value text"));
  };

  const drawCharts = () => {
    const rows = [...epochs.values()].sort((a, b) => a.epoch - b.epoch);
    const x = rows.map((r) => r.epoch);
    const percent = true;
    lineChart(lossChart, [{ name: "training loss", x, y: rows.map((r) => r.train_loss) }],
      { yTitle: "loss", totalEpochs: run.epochs_total });
    lineChart(valChart, [{ name: metricLabel(valName(run)), x, y: rows.map(valOf), color: "#10b981" }],
      { yTitle: metricLabel(valName(run)), percent, totalEpochs: run.epochs_total });
    lossChart.dataset.points = String(x.length);
    valChart.dataset.points = String(x.length);
  };

  const drawConfig = () => {
    const hidden = run.model === "cnn" ? SEQ2SEQ_ONLY : [];
    const entries = Object.entries(run.config || {}).filter(([k, v]) => v !== null && !hidden.includes(k));
    const started = parseTime(run.started_at);
    const extra = [
      ["run id", run.id], ["created", new Date(parseTime(run.created_at)).toLocaleString()],
      ["started", started ? new Date(started).toLocaleString() : "—"], ["attempt", run.attempt],
    ];
    replace(config, hyperParams(run),
      h("dl", { class: "kv columns" }, [...entries, ...extra].map(([k, v]) => [h("dt", {}, k), h("dd", { class: "mono" },
        typeof v === "object" ? JSON.stringify(v) : String(v))])));
  };

  const drawLinks = () => {
    const finished = isFinished(run.status);
    const link = (href, text, extra = {}) => h("a", { class: "btn small", href, ...extra }, text);
    replace(linkList,
      link(links.lossPng(run.id), "Loss curve · PNG", { target: "_blank", rel: "noopener" }),
      link(links.validationPng(run.id), "Validation curve · PNG", { target: "_blank", rel: "noopener" }),
      finished && run.status !== "failed"
        ? link(links.checkpoint(run.id), "Checkpoint · .pt", { download: "", id: "checkpoint-link" })
        : h("span", { class: "muted small" }, run.status === "failed" ? "No checkpoint: the run failed."
          : "The checkpoint can be downloaded once the run finishes."),
      link(`/runs/${run.id}/metrics`, "Metrics · JSON", { target: "_blank", rel: "noopener" }));
  };

  const drawAll = () => {
    drawHead();
    drawSummary();
    drawCharts();
    drawConfig();
    drawLinks();
    evaluations.setRun(run, [...epochs.values()]);
  };

  let stopped = false;
  async function reload() {
    try {
      const [fresh, m, s] = await Promise.all([api.run(id), api.metrics(id), servingRuns()]);
      if (stopped) return;
      run = fresh;
      serving = s;
      for (const e of m.epochs) epochs.set(e.epoch, e);
      drawAll();
    } catch (err) {
      if (!stopped) replace(errorSlot, errorBox(err, "Could not refresh this run:"));
    }
  }

  drawAll();
  evaluations.refresh();
  let close = null;
  if (!isFinished(run.status)) {
    liveNote.textContent = "Following this run live: the charts grow as epochs finish.";
    close = followRun(id, {
      onEpoch: (e) => {
        epochs.set(e.epoch, e);
        run = { ...run, epochs_done: Math.max(run.epochs_done || 0, e.epoch), latest_epoch: e,
          status: run.status === "queued" ? "running" : run.status };
        drawSummary();
        drawCharts();
        evaluations.setRun(run, [...epochs.values()]);
      },
      onStatus: (s) => {
        run = { ...run, status: s.status, error: s.error, cancel_requested: s.cancel_requested,
          test_metric: s.test_metric ?? run.test_metric };
        drawHead();
        drawSummary();
        if (isFinished(s.status)) liveNote.textContent = FINAL_WORDS[s.status];
        reload(); // started_at, finished_at, best metric and the files follow the status
      },
      onBroken: () => { liveNote.textContent = "The live connection was lost; reload the page to follow again."; },
    });
  }
  const ticker = setInterval(() => {
    if (run.status === "running") drawSummary();
  }, 1000);

  return () => {
    stopped = true;
    clearInterval(ticker);
    if (close) close();
    evaluations.close();
    purge(lossChart);
    purge(valChart);
  };
}
