// Compare runs side by side (GET /compare?runs=a,b,...): their configurations with the differing settings
// highlighted, final and best metrics, evaluation results, overlaid loss and validation curves, and the
// CSV / JSON downloads. Refreshed while any of the runs is still training.

import { api, links } from "../api.js";
import { errorBox, h, replace } from "../dom.js";
import { lineChart, PALETTE, purge } from "../charts.js";
import { decodingText } from "../evaluations.js";
import { isFinished, metric, metricLabel, shortId, statusBadge, valOf } from "../format.js";

const POLL_MS = 3000;
// TrainConfig fields that mean nothing for a CNN (left out when every run is one, as on the run page).
const SEQ2SEQ_ONLY = ["attention", "hidden_size", "max_length", "direction"];
const ID = /^[0-9a-f]{32}$/;

/** A run's validation metric name ("accuracy" / "error_rate"), from what the API sends. */
function metricOf(run) {
  if (run.metric) return run.metric;
  const key = (run.curves || []).flatMap((r) => Object.keys(r)).find((k) => k.startsWith("val_") && k !== "val_metric");
  if (key) return key.slice(4);
  return run.model === "cnn" ? "accuracy" : "error_rate";
}

function show(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

/** Sort evaluation rows: data, split and checkpoint, then greedy before beam, beam sizes ascending. */
function compareOrder(a, b) {
  for (let i = 0; i < a.length; i += 1) {
    if (a[i] < b[i]) return -1;
    if (a[i] > b[i]) return 1;
  }
  return 0;
}

/** A compared run's final metrics by name (test_accuracy, ...). */
function finals(run) {
  return run.final_metrics || run.final || {};
}

/** The value of a metric named `name` for display (accuracy and error rates as percentages). */
function metricValue(value, name) {
  return typeof value === "number" ? metric(value, name) : show(value);
}

export async function render(root, { query }) {
  const ids = (query.get("runs") || "").split(",").map((s) => s.trim()).filter(Boolean);
  const unique = [...new Set(ids)];
  const crumbs = h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: "#/runs" }, "Runs"), " / ",
    h("span", {}, "Compare"));
  if (unique.length < 2 || !unique.every((id) => ID.test(id))) {
    replace(root, h("section", { class: "page" }, crumbs, h("h1", {}, "Compare runs"),
      h("div", { class: "alert info", role: "status" }, "Pick two or more runs to compare: tick them on the ",
        h("a", { href: "#/runs" }, "Runs page"), " and press “Compare selected”.")));
    return null;
  }

  const head = h("div", { class: "page-head" });
  const errorSlot = h("div", { class: "live-error" });
  const onlyDiff = h("input", { type: "checkbox", id: "compare-only-diff",
    onchange: () => { if (last) drawConfig(last); } });
  const configBox = h("div", { class: "table-wrap" });
  const metricsBox = h("div", { class: "table-wrap" });
  const evalBox = h("div", { class: "table-wrap" });
  const lossChart = h("div", { class: "chart", id: "compare-loss-chart", role: "img",
    "aria-label": "training loss per epoch, one line per run" });
  const valChart = h("div", { class: "chart", id: "compare-val-chart", role: "img",
    "aria-label": "validation metric per epoch, one line per run" });
  const valTitle = h("h2", {}, "Validation metric");
  replace(root, h("section", { class: "page" }, crumbs, head, errorSlot,
    h("div", { class: "card" },
      h("div", { class: "card-head" }, h("h2", {}, "Configuration"),
        h("label", { class: "check small", for: "compare-only-diff" }, onlyDiff, " only the settings that differ")),
      configBox),
    h("div", { class: "card" }, h("h2", {}, "Metrics"), metricsBox),
    h("div", { class: "card" }, h("h2", {}, "Evaluations"), evalBox),
    h("div", { class: "grid two" },
      h("div", { class: "card" }, h("h2", {}, "Training loss"), lossChart),
      h("div", { class: "card" }, valTitle, valChart))));

  let last = null;
  const color = (i) => PALETTE[i % PALETTE.length];
  const runHeader = (run, i) => h("th", { scope: "col", class: "run-col", dataset: { runId: run.id } },
    h("div", { class: "nowrap" }, h("span", { class: "swatch", style: { background: color(i) } }),
      h("a", { class: "mono", href: `#/runs/${run.id}` }, shortId(run.id))),
    h("div", { class: "run-col-facts" }, h("span", { class: `model-tag ${run.model}` }, run.model), " ",
      h("span", { class: "small" }, run.dataset)));

  function drawHead(data) {
    const diffs = data.differences || [];
    replace(head,
      h("div", {}, h("h1", {}, `Compare ${data.runs.length} runs`),
        h("p", { class: "muted" }, diffs.length
          ? ["Settings that differ: ", diffs.map((k, i) => [i ? ", " : "", h("code", {}, k)])]
          : "The runs share every setting.")),
      h("div", { class: "toolbar" },
        h("a", { class: "btn", id: "compare-csv", href: links.compareCsv(unique), download: "" }, "Metrics · CSV"),
        h("a", { class: "btn", id: "compare-json", href: links.compareJson(unique), download: "" }, "Metrics · JSON")));
  }

  function drawConfig(data) {
    const diffs = new Set(data.differences || []);
    const keys = [];
    for (const run of data.runs) for (const k of Object.keys(run.config || {})) if (!keys.includes(k)) keys.push(k);
    const allCnn = data.runs.every((r) => r.model === "cnn");
    const irrelevant = (k) => allCnn && SEQ2SEQ_ONLY.includes(k) && !diffs.has(k);
    const shown = keys.filter((k) => (onlyDiff.checked ? diffs.has(k) : !irrelevant(k)));
    replace(configBox, h("table", { class: "compare-table", id: "compare-config" },
      h("caption", { class: "sr-only" }, "Configuration of each run; differing settings are highlighted"),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Setting"), data.runs.map(runHeader))),
      h("tbody", {},
        h("tr", {}, h("th", { scope: "row" }, "status"), data.runs.map((r) => h("td", {}, statusBadge(r.status)))),
        shown.map((k) => h("tr", { class: diffs.has(k) ? "diff" : null, dataset: { key: k, differs: String(diffs.has(k)) } },
          h("th", { scope: "row" }, h("code", {}, k),
            diffs.has(k) ? h("span", { class: "badge differs" }, "differs") : null),
          data.runs.map((r) => h("td", { class: "mono" }, show((r.config || {})[k]))))))));
  }

  function drawMetrics(data) {
    const names = [];
    for (const run of data.runs) for (const k of Object.keys(finals(run))) if (!names.includes(k)) names.push(k);
    const bestOf = (run) => (run.best && run.best.value !== undefined ? run.best : null);
    // which run has the best validation value (only meaningful when they share the metric)
    const metrics = new Set(data.runs.map(metricOf));
    let winner = null;
    if (metrics.size === 1) {
      const higher = [...metrics][0] === "accuracy";
      for (const run of data.runs) {
        const b = bestOf(run);
        if (!b || b.value === null) continue;
        if (!winner || (higher ? b.value > bestOf(winner).value : b.value < bestOf(winner).value)) winner = run;
      }
    }
    replace(metricsBox, h("table", { class: "compare-table", id: "compare-metrics" },
      h("caption", { class: "sr-only" }, "Final and best metrics of each run"),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Metric"), data.runs.map(runHeader))),
      h("tbody", {},
        h("tr", { dataset: { metric: "epochs" } }, h("th", { scope: "row" }, "epochs"), data.runs.map((r) => {
          const rows = r.curves || [];
          const done = r.epochs_done ?? rows.length;
          const total = r.epochs_total ?? (r.config || {}).epochs;
          return h("td", {}, total ? `${done} / ${total}` : String(done));
        })),
        h("tr", { dataset: { metric: "best" } }, h("th", { scope: "row" }, "best validation"), data.runs.map((r) => {
          const b = bestOf(r);
          const name = `val_${metricOf(r)}`;
          return h("td", { class: winner === r ? "winner" : null },
            b && b.value !== null ? [h("span", { class: "mono strong" }, metric(b.value, name)),
              h("span", { class: "muted small" }, ` ${metricLabel(name)} · epoch ${b.epoch ?? "?"}`),
              winner === r ? h("span", { class: "badge best" }, "best") : null] : "—");
        })),
        names.map((k) => h("tr", { dataset: { metric: k } }, h("th", { scope: "row" }, h("code", {}, k)),
          data.runs.map((r) => h("td", { class: "mono" }, metricValue(finals(r)[k], k))))))));
  }

  function drawEvaluations(data) {
    // one row per kind of evaluation (data, split, checkpoint, decoding); the newest result of each run
    const rows = new Map();
    data.runs.forEach((run, i) => {
      for (const e of run.evaluations || []) {
        if (e.status && e.status !== "succeeded") continue;
        const label = [`${e.dataset ?? run.dataset} ${e.split}`, e.checkpoint_used || e.checkpoint,
          e.decoding ? decodingText(e) : null, e.limit ? `first ${e.limit}` : null].filter(Boolean).join(" · ");
        if (!rows.has(label)) {
          const order = [`${e.dataset ?? run.dataset} ${e.split} ${e.checkpoint_used || e.checkpoint}`,
            e.decoding === "beam" ? 1 : 0, e.beam_size || 0, e.limit || 0];
          rows.set(label, { order, cells: new Map() });
        }
        const { cells } = rows.get(label);
        if (!cells.has(i)) cells.set(i, e);
      }
    });
    if (!rows.size) {
      replace(evalBox, h("p", { class: "muted empty-note", id: "compare-evals-empty" },
        "No finished evaluations of these runs yet: ask for them on each run's page."));
      return;
    }
    const sorted = [...rows.entries()].sort(([, x], [, y]) => compareOrder(x.order, y.order));
    replace(evalBox, h("table", { class: "compare-table", id: "compare-evals" },
      h("caption", { class: "sr-only" }, "Evaluation results of each run"),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Evaluation"), data.runs.map(runHeader))),
      h("tbody", {}, sorted.map(([label, { cells }]) => h("tr", {},
        h("th", { scope: "row" }, label),
        data.runs.map((_, i) => {
          const e = cells.get(i);
          return h("td", {}, e ? [h("span", { class: "mono strong" }, metric(e.value, e.metric)),
            h("span", { class: "muted small" }, ` ${metricLabel(e.metric)}${e.n ? ` · n ${e.n}` : ""}`)] : "—");
        }))))));
  }

  function drawCharts(data) {
    const diffs = (data.differences || []).slice(0, 2);
    const name = (run) => [shortId(run.id), ...diffs.map((k) => `${k}=${show((run.config || {})[k])}`)].join(" · ");
    const series = (pick) => data.runs.map((run, i) => {
      const rows = [...(run.curves || [])].sort((a, b) => a.epoch - b.epoch);
      return { name: name(run), x: rows.map((r) => r.epoch), y: rows.map(pick), color: color(i) };
    });
    const metrics = new Set(data.runs.map(metricOf));
    const valLabel = metrics.size === 1 ? metricLabel([...metrics][0]) : "metric";
    valTitle.textContent = `Validation ${valLabel}`;
    const total = Math.max(1, ...data.runs.map((r) => r.epochs_total ?? (r.config || {}).epochs ?? 1));
    lineChart(lossChart, series((r) => r.train_loss), { yTitle: "training loss", totalEpochs: total });
    lineChart(valChart, series((r) => r.val_metric ?? valOf(r)), { yTitle: valLabel, percent: true, totalEpochs: total });
  }

  const draw = (data) => {
    last = data;
    drawHead(data);
    drawConfig(data);
    drawMetrics(data);
    drawEvaluations(data);
    drawCharts(data);
  };

  let stopped = false;
  let timer = null;
  const refresh = async () => {
    try {
      const data = await api.compare(unique);
      if (stopped) return;
      replace(errorSlot);
      draw(data);
      if (data.runs.every((r) => isFinished(r.status))) return;
    } catch (err) {
      if (stopped) return;
      replace(errorSlot, errorBox(err, "Could not compare these runs:"));
      if (err.status && err.status < 500) return; // an unknown run or a bad list: polling will not fix it
    }
    timer = setTimeout(refresh, POLL_MS);
  };
  await refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
    purge(lossChart);
    purge(valChart);
  };
}
