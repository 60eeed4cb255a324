// Runs: every run with its model, data, hyper-parameters, status, progress and latest metrics.
// Polls GET /runs to discover runs and follows the active ones through their event streams. Runs ticked
// in the first column are compared side by side on #/compare?runs=a,b.

import { api } from "../api.js";
import { errorBox, h, replace } from "../dom.js";
import { ago, isFinished, shortId, statusBadge } from "../format.js";
import { followRun } from "../live.js";
import {
  hyperParams, latestMetrics, progressView, runActions, SERVING_TITLE, servingRole, servingRuns,
} from "../runbits.js";

const POLL_MS = 3000;
// Browsers allow ~6 connections per host over HTTP/1.1: keep most free for the page's own requests.
const MAX_STREAMS = 3;

export async function render(root, { query }) {
  const state = {
    runs: new Map(), // id -> run
    seconds: new Map(), // id -> Map(epoch -> seconds) from the event streams
    streams: new Map(), // id -> close()
    serving: {},
    filters: { status: query.get("status") || "", model: query.get("model") || "" },
    selected: new Set(), // run ids ticked for comparison, in the order they were ticked
  };
  const status = h("div", { class: "live-error" });
  const body = h("tbody");
  const empty = h("div", { class: "empty", hidden: true },
    h("p", {}, "No runs yet."), h("a", { class: "btn", href: "#/train" }, "Start a training"));
  const table = h("table", { class: "runs-table" },
    h("caption", { class: "sr-only" }, "Training runs, newest first"),
    h("thead", {}, h("tr", {}, h("th", { scope: "col", class: "select-cell" }, h("span", { class: "sr-only" }, "Compare")),
      ["Run", "Model · data", "Hyper-parameters", "Status", "Progress", "Latest metrics", ""]
      .map((t) => h("th", { scope: "col" }, t)))),
    body);

  const filter = (name, label, options) => h("label", { class: "inline-field" }, label, " ",
    h("select", {
      name, "aria-label": label,
      onchange: (event) => { state.filters[name] = event.target.value; refresh(true); },
    }, options.map(([v, t]) => h("option", { value: v, selected: state.filters[name] === v }, t))));

  const compareButton = h("button", {
    type: "button", class: "btn", id: "compare-selected", disabled: true,
    title: "tick two or more runs to compare them side by side",
    onclick: () => { window.location.hash = `#/compare?runs=${[...state.selected].join(",")}`; },
  }, "Compare selected");
  const drawCompare = () => {
    const n = state.selected.size;
    compareButton.disabled = n < 2;
    compareButton.textContent = n ? `Compare selected (${n})` : "Compare selected";
  };

  replace(root, h("section", { class: "page" },
    h("div", { class: "page-head" },
      h("div", {}, h("h1", {}, "Runs"), h("p", { class: "muted" }, "Live view of every training run.")),
      h("div", { class: "toolbar" },
        filter("status", "Status", [["", "all"], ["queued", "queued"], ["running", "running"],
          ["succeeded", "succeeded"], ["failed", "failed"], ["cancelled", "cancelled"]]),
        filter("model", "Model", [["", "all"], ["cnn", "cnn"], ["seq2seq", "seq2seq"]]),
        compareButton,
        h("a", { class: "btn primary", href: "#/train" }, "New training"))),
    status,
    h("div", { class: "table-wrap card" }, table, empty)));

  const rowFor = (run) => {
    const seconds = state.seconds.get(run.id);
    const role = servingRole(state.serving, run);
    return h("tr", { dataset: { runId: run.id, status: run.status }, class: role ? "serving" : null },
      h("td", { class: "select-cell" }, h("input", {
        type: "checkbox", class: "compare-check", checked: state.selected.has(run.id),
        "aria-label": `Select run ${shortId(run.id)} to compare`,
        onchange: (event) => {
          if (event.target.checked) state.selected.add(run.id);
          else state.selected.delete(run.id);
          drawCompare();
        },
      })),
      h("td", { "data-label": "Run" },
        h("a", { class: "mono strong", href: `#/runs/${run.id}` }, shortId(run.id)),
        h("div", { class: "muted small" }, ago(run.created_at)),
        run.sweep_id ? h("a", { class: "small", href: `#/sweeps/${run.sweep_id}` }, "sweep") : null),
      h("td", { "data-label": "Model · data" }, h("span", { class: `model-tag ${run.model}` }, run.model),
        h("div", { class: "small" }, run.dataset)),
      h("td", { "data-label": "Hyper-parameters" }, hyperParams(run)),
      h("td", { "data-label": "Status" }, statusBadge(run.status, run.cancel_requested),
        role ? h("span", { class: "badge serving", title: SERVING_TITLE[role] }, "serving") : null),
      h("td", { "data-label": "Progress", class: "progress-cell" },
        progressView(run, seconds ? [...seconds.values()] : null)),
      h("td", { "data-label": "Latest metrics" }, latestMetrics(run)),
      h("td", { class: "actions-cell" }, runActions(run, { promoted: role === "promoted", onChange: onAction })));
  };

  const rows = new Map(); // id -> {sig, tr}: rows are rebuilt only when their run changed
  const draw = () => {
    const runs = [...state.runs.values()].filter((r) =>
      (!state.filters.status || r.status === state.filters.status)
      && (!state.filters.model || r.model === state.filters.model));
    runs.sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
    const wanted = runs.map((run) => {
      const sig = JSON.stringify([run, servingRole(state.serving, run)]);
      const known = rows.get(run.id);
      if (known && known.sig === sig) return known.tr;
      const tr = rowFor(run);
      rows.set(run.id, { sig, tr });
      return tr;
    });
    wanted.forEach((tr, i) => {
      if (body.children[i] !== tr) body.insertBefore(tr, body.children[i] || null);
    });
    while (body.children.length > wanted.length) body.lastElementChild.remove();
    empty.hidden = runs.length > 0;
    table.hidden = runs.length === 0;
  };

  // Elapsed times and ETAs move between events: refresh only the progress cells.
  const tick = () => {
    for (const run of state.runs.values()) {
      if (run.status !== "running") continue;
      const cell = body.querySelector(`tr[data-run-id="${run.id}"] .progress-cell`);
      const seconds = state.seconds.get(run.id);
      if (cell) replace(cell, progressView(run, seconds ? [...seconds.values()] : null));
    }
  };

  const merge = (run) => {
    const known = state.runs.get(run.id);
    // the event stream may be ahead of the last poll: never step back in epochs
    if (known && !isFinished(run.status) && (known.epochs_done || 0) > (run.epochs_done || 0)) {
      run = { ...run, epochs_done: known.epochs_done, latest_epoch: known.latest_epoch };
    }
    state.runs.set(run.id, run);
  };

  const follow = () => {
    for (const [id, close] of state.streams) {
      const run = state.runs.get(id);
      if (!run || isFinished(run.status)) {
        close();
        state.streams.delete(id);
      }
    }
    const active = [...state.runs.values()].filter((r) => !isFinished(r.status) && !state.streams.has(r.id))
      .sort((a, b) => (a.status === "running" ? -1 : 1) - (b.status === "running" ? -1 : 1));
    for (const run of active.slice(0, Math.max(0, MAX_STREAMS - state.streams.size))) {
      state.streams.set(run.id, followRun(run.id, {
        onEpoch: (e) => {
          const r = state.runs.get(run.id);
          if (!state.seconds.has(run.id)) state.seconds.set(run.id, new Map());
          state.seconds.get(run.id).set(e.epoch, e.seconds);
          if (r && e.epoch >= (r.epochs_done || 0)) {
            state.runs.set(run.id, { ...r, epochs_done: e.epoch, latest_epoch: e, status: r.status === "queued"
              ? "running" : r.status });
          }
          draw();
        },
        onStatus: (s) => {
          const r = state.runs.get(run.id);
          if (r) {
            state.runs.set(run.id, { ...r, status: s.status, error: s.error, cancel_requested: s.cancel_requested,
              test_metric: s.test_metric ?? r.test_metric });
          }
          draw();
          refresh(false); // start and finish times, best metric: the run itself has them
        },
      }));
    }
  };

  let stopped = false;
  let timer = null;
  async function refresh(reset) {
    clearTimeout(timer);
    try {
      const [runs, serving] = await Promise.all([api.runs({ limit: 200 }), servingRuns()]);
      if (stopped) return;
      if (reset) state.runs.clear();
      const seen = new Set(runs.map((r) => r.id));
      for (const id of [...state.runs.keys()]) if (!seen.has(id)) state.runs.delete(id);
      for (const id of [...state.selected]) if (!seen.has(id)) state.selected.delete(id);
      drawCompare();
      runs.forEach(merge);
      state.serving = serving;
      replace(status);
      follow();
      draw();
    } catch (err) {
      if (stopped) return;
      replace(status, errorBox(err, "Could not refresh the runs:"));
    }
    if (!stopped) timer = setTimeout(() => refresh(false), POLL_MS);
  }
  function onAction(updated) {
    if (updated) merge(updated);
    draw();
    refresh(false);
  }

  const ticker = setInterval(tick, 1000);
  await refresh(true);

  return () => {
    stopped = true;
    clearTimeout(timer);
    clearInterval(ticker);
    for (const close of state.streams.values()) close();
  };
}
