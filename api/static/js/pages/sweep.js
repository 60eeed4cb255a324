// One learning-rate sweep: the comparison table (best highlighted) and the overlaid curves.

import { api, links } from "../api.js";
import { errorBox, h, replace } from "../dom.js";
import { lineChart, PALETTE, purge } from "../charts.js";
import { isFinished, learningRate, metric, metricLabel, num, shortId, statusBadge, valOf } from "../format.js";

const POLL_MS = 3000;

export async function render(root, { id }) {
  const head = h("div", { class: "page-head" });
  const errorSlot = h("div");
  const table = h("div", { class: "card table-wrap" });
  const lossChart = h("div", { class: "chart", id: "sweep-loss-chart" });
  const valChart = h("div", { class: "chart", id: "sweep-val-chart" });
  replace(root, h("section", { class: "page" },
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: "#/sweeps" }, "Sweeps"), " / ",
      h("span", { class: "mono" }, shortId(id))),
    head, errorSlot, table,
    h("div", { class: "grid two" },
      h("div", { class: "card" }, h("h2", {}, "Training loss"), lossChart),
      h("div", { class: "card" }, h("h2", { id: "sweep-val-title" }, "Validation metric"), valChart))));

  const draw = (sweep, histories) => {
    const metricKey = `val_${sweep.metric}`;
    root.querySelector("#sweep-val-title").textContent = `Validation ${metricLabel(metricKey)}`;
    replace(head,
      h("div", {}, h("h1", {}, "Learning-rate sweep ", h("span", { class: "mono" }, shortId(id))),
        h("p", { class: "muted" }, h("span", { class: `model-tag ${sweep.model}` }, sweep.model), ` ${sweep.dataset} · `,
          `best = ${sweep.higher_is_better ? "highest" : "lowest"} validation ${metricLabel(metricKey)}`)),
      h("div", { class: "toolbar" },
        h("a", { class: "btn", id: "sweep-compare", href: `#/compare?runs=${sweep.runs.map((r) => r.run_id).join(",")}` },
          "Compare these runs"),
        h("a", { class: "btn", href: links.sweepPng(id), target: "_blank", rel: "noopener" }, "Plot (PNG)")));
    replace(table, h("table", { class: "sweep-table" },
      h("caption", { class: "sr-only" }, "Final metrics per learning rate"),
      h("thead", {}, h("tr", {}, ["Learning rate", "Status", "Epochs", "Final training loss",
        `Final validation ${metricLabel(metricKey)}`, `Best validation ${metricLabel(metricKey)}`,
        `Test ${metricLabel(metricKey)}`, "Run"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, sweep.runs.map((row, i) => h("tr", {
        class: row.best ? "best" : null, dataset: { runId: row.run_id, best: String(row.best) },
      },
      h("td", { class: "mono strong nowrap" }, h("span", { class: "swatch", style: { background: PALETTE[i % PALETTE.length] } }),
        learningRate(row.learning_rate), row.best ? h("span", { class: "badge best" }, "best") : null),
      h("td", {}, statusBadge(row.status)),
      h("td", {}, `${row.epochs_done} / ${row.epochs_total}`),
      h("td", {}, num(row.final_train_loss)),
      h("td", {}, metric(row.final_val_metric, metricKey)),
      h("td", {}, metric(row.best_val_metric, metricKey)),
      h("td", { "data-test-metric": "" }, metric(row.test_metric, metricKey)),
      h("td", {}, h("a", { class: "mono", href: `#/runs/${row.run_id}` }, shortId(row.run_id))))))));
    const series = (pick) => sweep.runs.map((row, i) => {
      const rows = histories[i] || [];
      return { name: `lr=${learningRate(row.learning_rate)}`, x: rows.map((e) => e.epoch), y: rows.map(pick),
        color: PALETTE[i % PALETTE.length] };
    });
    const total = Math.max(...sweep.runs.map((r) => r.epochs_total));
    lineChart(lossChart, series((e) => e.train_loss), { yTitle: "training loss", totalEpochs: total });
    lineChart(valChart, series(valOf), { yTitle: metricLabel(metricKey), percent: true, totalEpochs: total });
  };

  let stopped = false;
  let timer = null;
  const refresh = async () => {
    try {
      const sweep = await api.sweep(id);
      const histories = await Promise.all(sweep.runs.map((r) => api.metrics(r.run_id).then((m) => m.epochs)));
      if (stopped) return;
      replace(errorSlot);
      draw(sweep, histories);
      if (sweep.runs.every((r) => isFinished(r.status))) return;
    } catch (err) {
      if (stopped) return;
      replace(errorSlot, errorBox(err, "Could not load the sweep:"));
      if (err.status === 404) return;
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
