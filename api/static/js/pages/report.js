// The assignment's report (GET /report): the learning-rate sweep, the best rate's curves, the activation
// maps, attention vs no attention, greedy vs beam decoding and the theory answers. A section that is not
// ready says which request produces it; the Reproduce form (POST /report/reproduce) queues everything
// missing, and the page then refreshes itself until every section is ready.

import { api, links } from "../api.js";
import { banner, errorBox, h, replace } from "../dom.js";
import { lineChart, PALETTE, purge } from "../charts.js";
import { learningRate, num, pct, shortId, statusBadge } from "../format.js";

const POLL_MS = 4000;

const TITLES = {
  sweep: "Learning-rate sweep",
  curves: "Training curves of the best learning rate",
  activations: "Activation maps of the first convolution",
  attention: "Attention vs no attention",
  decoding: "Greedy vs beam decoding",
  theory: "Theory",
};

const runLink = (id) => (id ? h("a", { class: "mono", href: `#/runs/${id}` }, shortId(id)) : "—");

function table(id, caption, headers, rows) {
  return h("div", { class: "table-wrap" }, h("table", { class: "report-table", id },
    h("caption", { class: "sr-only" }, caption),
    h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows)));
}

function epochsText(done, total) {
  return `${done ?? 0} / ${total ?? "?"}`;
}

// ---- the sections -------------------------------------------------------------------------------------

function drawSweep(s) {
  const rows = s.rows || [];
  return [
    h("p", { class: "muted" }, `CNN on ${s.dataset ?? "—"}, one run per learning rate; the best rate has the `
      + "highest best validation accuracy", s.sweep_id ? [" · ", h("a", { href: `#/sweeps/${s.sweep_id}` }, "the sweep"),
      " · ", h("a", { href: `#/compare?runs=${rows.map((r) => r.run_id).join(",")}` }, "compare these runs")] : null, "."),
    rows.length ? table("report-sweep", "Learning-rate sweep", ["Learning rate", "Status", "Epochs", "Final training loss",
      "Best val accuracy", "Best epoch", "Test accuracy", "Run"], rows.map((r) => {
      const best = s.best_run_id ? r.run_id === s.best_run_id : r.learning_rate === s.best_rate;
      return h("tr", { class: best ? "best" : null, dataset: { runId: r.run_id, best: String(best) } },
        h("td", { class: "mono strong nowrap" }, learningRate(r.learning_rate),
          best ? h("span", { class: "badge best" }, "best") : null),
        h("td", {}, statusBadge(r.status)),
        h("td", {}, epochsText(r.epochs_done, r.epochs_total)),
        h("td", { class: "mono" }, num(r.final_train_loss)),
        h("td", { class: "mono" }, pct(r.best_val_accuracy)),
        h("td", {}, r.best_epoch ?? "—"),
        h("td", { class: "mono" }, pct(r.test_accuracy)),
        h("td", {}, runLink(r.run_id)));
    })) : null,
  ];
}

function drawCurves(s, charts) {
  const rows = [...(s.epochs || [])].sort((a, b) => a.epoch - b.epoch);
  const loss = h("div", { class: "chart", id: "report-loss-chart", role: "img", "aria-label": "training loss per epoch" });
  const val = h("div", { class: "chart", id: "report-val-chart", role: "img",
    "aria-label": "validation accuracy per epoch" });
  charts.push([loss, [{ name: "training loss", x: rows.map((r) => r.epoch), y: rows.map((r) => r.train_loss) }],
    { yTitle: "loss" }]);
  charts.push([val, [{ name: "validation accuracy", x: rows.map((r) => r.epoch), y: rows.map((r) => r.val_accuracy),
    color: "#10b981" }], { yTitle: "accuracy", percent: true }]);
  return [
    h("p", { class: "muted" }, `Learning rate ${learningRate(s.learning_rate)} · run `, runLink(s.run_id),
      s.loss_plot_url ? [" · ", h("a", { href: s.loss_plot_url, target: "_blank", rel: "noopener" }, "loss PNG")] : null,
      s.validation_plot_url ? [" · ", h("a", { href: s.validation_plot_url, target: "_blank", rel: "noopener" },
        "validation PNG")] : null),
    h("div", { class: "grid two" }, h("div", {}, h("h3", {}, "Training loss"), loss),
      h("div", {}, h("h3", {}, "Validation accuracy"), val)),
  ];
}

function drawActivations(s, ready) {
  return [
    h("p", { class: "muted" }, `Layer ${s.layer} of run `, runLink(s.run_id),
      ` on test image ${s.image_index}${s.dataset ? ` of ${s.dataset}` : ""}.`),
    ready && s.image_url ? h("figure", { class: "report-figure" },
      h("img", { src: s.image_url, id: "report-activations-img", alt: `activation maps of ${s.layer}` })) : null,
  ];
}

function drawAttention(s, charts) {
  const runs = [["without attention", s.without_attention], ["with attention", s.with_attention]].filter(([, r]) => r);
  const chart = h("div", { class: "chart", id: "report-attention-chart", role: "img",
    "aria-label": "validation error rate per epoch, with and without attention" });
  if (runs.length) {
    charts.push([chart, runs.map(([name, r], i) => {
      const curve = [...(r.curve || [])].sort((a, b) => a.epoch - b.epoch);
      return { name, x: curve.map((e) => e.epoch), y: curve.map((e) => e.val_error_rate), color: PALETTE[i ? 3 : 2] };
    }), { yTitle: "validation error rate", percent: true }]);
  }
  return [
    runs.length ? table("report-attention", "Seq2seq with and without attention", ["Decoder", "Run", "Epochs",
      "Best val error rate", "Best epoch", "Test error rate"], runs.map(([name, r]) => h("tr", {
      dataset: { attention: String(r.attention) } },
    h("td", { class: "strong" }, name), h("td", {}, runLink(r.run_id), h("div", { class: "muted small" }, r.dataset)),
    h("td", {}, epochsText(r.epochs_done, r.epochs_total)),
    h("td", { class: "mono" }, pct(r.best_val_error_rate)), h("td", {}, r.best_epoch ?? "—"),
    h("td", { class: "mono strong" }, pct(r.test_error_rate))))) : null,
    s.same_dataset === false && runs.length === 2
      ? h("p", { class: "muted small" }, "Note: the two runs were trained on different datasets.") : null,
    runs.length ? [h("h3", {}, "Validation error rate per epoch"), chart] : null,
  ];
}

function cellText(c) {
  if (!c) return "—";
  if (c.status === "succeeded") return h("span", { class: "mono" }, pct(c.error_rate));
  return h("span", { class: "muted small" }, c.status);
}

function drawDecoding(s, ready) {
  const runs = s.runs || [];
  const header = runs.map((r) => h("span", {}, r.attention ? "with attention" : "without attention", " ",
    h("span", { class: "muted small" }, "(", runLink(r.run_id), ")")));
  const rows = [];
  if ((s.greedy || []).length) {
    rows.push(h("tr", { dataset: { decoding: "greedy" } }, h("th", { scope: "row" }, "greedy"),
      runs.map((_, i) => h("td", {}, cellText(s.greedy[i])))));
  }
  for (const row of s.beam || []) {
    rows.push(h("tr", { dataset: { decoding: `beam-${row.beam_size}` } }, h("th", { scope: "row" }, `beam ${row.beam_size}`),
      runs.map((_, i) => h("td", {}, cellText((row.cells || [])[i])))));
  }
  const n = [...(s.greedy || []), ...(s.beam || []).flatMap((r) => r.cells || [])].find((c) => c && c.n);
  return [
    h("p", { class: "muted" }, "Test error rate of each decoder (length penalty 0)", n ? ` on ${n.n} sentences` : "", "."),
    runs.length && rows.length
      ? table("report-decoding", "Test error rate by decoding", ["Decoding", ...header], rows) : null,
    (s.pending || []).length
      ? h("p", { class: "muted small" }, `${s.pending.length} evaluation(s) still queued or running.`) : null,
    (s.needed || []).length ? h("details", { class: "needed" },
      h("summary", {}, `${s.needed.length} evaluation request(s) still to make`),
      h("ul", { class: "small" }, s.needed.map((e) => h("li", {},
        h("code", {}, `POST ${e.path} ${JSON.stringify(e.body)}`))))) : null,
    ready && s.plot_url ? h("figure", { class: "report-figure" }, h("img", { src: s.plot_url, id: "report-decoding-img",
      alt: "test error rate by beam size, with and without attention" })) : null,
  ];
}

function convMatrix(m, label) {
  return h("div", { class: "theory-block" },
    h("h3", {}, label),
    h("dl", { class: "kv" },
      h("dt", {}, "input (C, H, W)"), h("dd", { class: "mono" }, (m.input_shape || []).join(" × ")),
      h("dt", {}, "kernel (C_out, C_in, kH, kW)"), h("dd", { class: "mono" }, (m.kernel_shape || []).join(" × ")),
      h("dt", {}, "stride · padding"), h("dd", { class: "mono" }, `${m.stride} · ${m.padding}`),
      h("dt", {}, "matrix shape"), h("dd", { class: "mono" }, (m.matrix_shape || []).join(" × ")),
      h("dt", {}, "non-zero entries"), h("dd", { class: "mono" }, `${m.nonzeros} (${pct(m.sparsity)} zeros)`)),
    m.matrix ? h("div", { class: "table-wrap matrix-wrap" }, h("table", { class: "matrix" },
      h("tbody", {}, m.matrix.map((row) => h("tr", {}, row.map((v) => h("td", { class: v === "0" ? "zero" : null }, v)))))))
      : null);
}

function drawTheory(s) {
  const cnn = s.cnn_parameters || {};
  const fc = s.fc_parameters || {};
  const layers = [...new Set([...Object.keys(cnn), ...Object.keys(fc)])];
  return [
    h("div", { class: "grid two" },
      s.conv_example ? convMatrix(s.conv_example, "A convolution as a matrix product (example)") : null,
      s.cnn_conv1 ? convMatrix(s.cnn_conv1, "The CNN's first convolution as a matrix") : null),
    h("h3", {}, "Parameters: convolutions vs fully-connected replacements"),
    table("report-params", "Parameter counts", ["Layer", "CNN", "Fully connected"], layers.map((k) => h("tr", {
      class: k === "total" ? "total" : null },
    h("th", { scope: "row" }, k), h("td", { class: "mono" }, (cnn[k] ?? "—").toLocaleString("en")),
    h("td", { class: "mono" }, (fc[k] ?? "—").toLocaleString("en"))))),
    s.ratio ? h("p", { class: "strong" }, `The fully-connected network needs ${num(s.ratio, 3)}× the parameters.`) : null,
  ];
}

/** Whether something the report waits for is queued or running (so refreshing will show progress). */
function working(report) {
  const sweep = (report.sweep && report.sweep.rows) || [];
  const att = report.attention || {};
  const text = [att.without_attention, att.with_attention].filter(Boolean);
  return sweep.some((r) => r.status === "queued" || r.status === "running")
    || text.some((r) => (r.epochs_done ?? 0) < (r.epochs_total ?? 0))
    || ((report.decoding && report.decoding.pending) || []).length > 0
    || Object.keys(TITLES).some((k) => report[k] && /\bstill\b/.test(report[k].missing || "")); // "still queued"
}

// ---- the page -----------------------------------------------------------------------------------------

export async function render(root, { query }) {
  let limit = query.get("limit") || "";
  let datasets = [];
  try {
    datasets = await api.datasets();
  } catch {
    datasets = [];
  }
  const head = h("div", { class: "page-head" });
  const status = h("div", { class: "live-error" });
  const sectionsBox = h("div", { class: "report-sections" });
  const formBox = h("div");
  replace(root, h("section", { class: "page" }, head, status, formBox, sectionsBox));

  // ---- the Reproduce form ----
  const pick = (kind, preferred) => {
    const mine = datasets.filter((d) => d.kind === kind);
    const names = mine.map((d) => d.name);
    return names.includes(preferred) ? preferred : names[0] || preferred;
  };
  const select = (id, kind, preferred) => {
    const options = datasets.filter((d) => d.kind === kind).map((d) => d.name);
    if (!options.length) options.push(preferred);
    const chosen = pick(kind, preferred);
    return h("select", { id, name: id }, options.map((n) => h("option", { value: n, selected: n === chosen }, n)));
  };
  const numberInput = (id, placeholder, value = "") => h("input", { type: "text", inputmode: "numeric", id, name: id,
    placeholder, autocomplete: "off", value });
  const inputs = {
    image: select("reproduce-image", "images", "kmnist"),
    text: select("reproduce-text", "pairs", "spa-eng"),
    cnnEpochs: numberInput("reproduce-cnn-epochs", "20"),
    s2sEpochs: numberInput("reproduce-s2s-epochs", "50"),
    limit: numberInput("reproduce-limit", "all", limit),
  };
  const field = (input, label, hint) => h("div", { class: "field" }, h("label", { for: input.id }, label), input,
    hint ? h("p", { class: "hint" }, hint) : null);
  const formAlert = h("div", { id: "reproduce-result", "aria-live": "polite" });
  const submit = h("button", { type: "submit", class: "btn primary", id: "reproduce-submit" }, "Reproduce");
  const form = h("form", { class: "card form", id: "reproduce-form", novalidate: true, onsubmit: onReproduce },
    h("div", {}, h("h2", {}, "Reproduce"), h("p", { class: "muted small" }, "Queues every run and evaluation the report still needs (runs that already match are "
      + "reused); the page then refreshes until every section is ready.")),
    h("div", { class: "fields compact" },
      field(inputs.image, "Image dataset", "the CNN sweep"),
      field(inputs.text, "Text dataset", "the seq2seq runs"),
      field(inputs.cnnEpochs, "CNN epochs", "empty = 20"),
      field(inputs.s2sEpochs, "Seq2seq epochs", "empty = 50"),
      field(inputs.limit, "Limit", "examples per split; empty = all")),
    formAlert, h("div", { class: "form-actions" }, submit));
  replace(formBox, form);

  const asInt = (input) => {
    const t = input.value.trim();
    if (t === "") return undefined;
    const n = Number(t);
    return Number.isInteger(n) ? n : t; // the API explains anything else
  };

  let polling = false;
  async function onReproduce(event) {
    event.preventDefault();
    const body = { image_dataset: inputs.image.value, text_dataset: inputs.text.value };
    const cnn = asInt(inputs.cnnEpochs);
    const s2s = asInt(inputs.s2sEpochs);
    if (cnn !== undefined || s2s !== undefined) {
      body.epochs = {};
      if (cnn !== undefined) body.epochs.cnn = cnn;
      if (s2s !== undefined) body.epochs.seq2seq = s2s;
    }
    const lim = asInt(inputs.limit);
    if (lim !== undefined) body.limit = lim;
    submit.disabled = true;
    submit.textContent = "Queueing…";
    try {
      const r = await api.reproduce(body);
      replace(formAlert, h("div", { class: "alert success", role: "status" },
        `Queued ${r.runs.length} run(s), reused ${r.reused_runs.length}; ${r.evaluations.length} evaluation(s)`
        + `${r.sweep_id ? ` · sweep ${shortId(r.sweep_id)}` : ""}. This page refreshes until the report is ready.`));
      banner("The report's runs and evaluations are queued.", "success");
      limit = lim !== undefined ? String(lim) : "";
      // the report reads the runs of this limit: keep it in the address (no hashchange: the page stays)
      history.replaceState(null, "", `#/report${limit ? `?limit=${encodeURIComponent(limit)}` : ""}`);
      polling = true;
      await refresh();
    } catch (err) {
      replace(formAlert, errorBox(err, "Nothing was queued:"));
    } finally {
      submit.disabled = false;
      submit.textContent = "Reproduce";
    }
  }

  // ---- drawing and refreshing ----
  let charts = [];
  let defaultsSet = false;
  const setDefaults = (report) => {
    // the form starts from the datasets the report was made with (unless the user chose already)
    if (defaultsSet) return;
    defaultsSet = true;
    const att = report.attention || {};
    const text = (att.with_attention || att.without_attention || {}).dataset;
    for (const [input, name] of [[inputs.image, report.sweep && report.sweep.dataset], [inputs.text, text]]) {
      if (name && [...input.options].some((o) => o.value === name)) input.value = name;
    }
  };
  const draw = (report) => {
    setDefaults(report);
    for (const [el] of charts) purge(el);
    charts = [];
    const sections = Object.keys(TITLES);
    const readyCount = sections.filter((k) => report[k] && report[k].ready).length;
    replace(head,
      h("div", {}, h("h1", {}, "Report"),
        h("p", { class: "muted" }, `${readyCount} of ${sections.length} sections ready`,
          report.limit ? ` · runs and evaluations with limit ${report.limit}` : "",
          report.generated_at ? ` · generated ${new Date(report.generated_at).toLocaleTimeString()}` : "",
          polling && !report.ready ? h("span", { id: "report-polling" }, " · refreshing until ready") : "")),
      h("div", { class: "toolbar" },
        h("a", { class: "btn primary", id: "report-pdf", download: "",
          href: `${links.reportPdf}${limit ? `?limit=${encodeURIComponent(limit)}` : ""}` }, "Download PDF")));
    replace(sectionsBox, sections.map((key, i) => {
      const s = report[key] || { ready: false };
      let body;
      try {
        body = {
          sweep: () => drawSweep(s),
          curves: () => drawCurves(s, charts),
          activations: () => drawActivations(s, s.ready),
          attention: () => drawAttention(s, charts),
          decoding: () => drawDecoding(s, s.ready),
          theory: () => drawTheory(s),
        }[key]();
      } catch (err) {
        body = errorBox(err, "This section could not be drawn:");
      }
      return h("section", { class: "card report-section", id: `report-${key}`, dataset: { ready: String(Boolean(s.ready)) },
        "aria-labelledby": `report-${key}-title` },
      h("div", { class: "card-head" }, h("h2", { id: `report-${key}-title` }, `${i + 1}. ${TITLES[key]}`),
        h("span", { class: `badge ${s.ready ? "status-succeeded" : "missing"}` }, s.ready ? "ready" : "missing")),
      s.ready || !s.missing ? null : h("div", { class: "alert warning missing-note", role: "note" },
        h("strong", {}, "Missing: "), h("code", {}, s.missing)),
      body);
    }));
    for (const [el, series, opts] of charts) {
      try {
        lineChart(el, series, opts);
      } catch (err) {
        replace(el, errorBox(err));
      }
    }
  };

  let stopped = false;
  let timer = null;
  async function refresh() {
    clearTimeout(timer);
    try {
      const report = await api.report(limit ? { limit } : undefined);
      if (stopped) return;
      replace(status);
      if (report.ready) polling = false;
      else if (working(report)) polling = true; // runs or evaluations are on their way: follow them
      draw(report);
    } catch (err) {
      if (stopped) return;
      replace(status, errorBox(err, "Could not read the report:"));
    }
    if (polling && !stopped) timer = setTimeout(refresh, POLL_MS);
  }
  await refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
    for (const [el] of charts) purge(el);
  };
}
