// Serving: this API process's dynamic batchers (GET /serving/stats), one card per endpoint: batching on or
// off, the queue against its limit, totals, recent batch sizes and the wait / model-time percentiles.
// Polls every 2 s while the page is open.

import { request } from "../api.js";
import { errorBox, h, replace } from "../dom.js";
import { num } from "../format.js";

const POLL_MS = 2000;
const TITLES = { predict: "Classify · /predict", transliterate: "Transliterate · /transliterate" };
const UNITS = { predict: "images", transliterate: "requests" };

/** Bucket "8" of batch_sizes counts sizes 5..8: label each bucket with its range. */
function bucketLabels(keys) {
  return keys.map((key, i) => {
    const low = i === 0 ? 1 : Number(keys[i - 1]) + 1;
    if (i === keys.length - 1 && i > 0) return `${low}+`;
    return low === Number(key) ? key : `${low}–${key}`;
  });
}

function fact(label, value, key, title = null) {
  return h("div", { class: "serving-fact", title },
    h("dt", {}, label), h("dd", { dataset: { stat: key } }, value));
}

function queueView(e) {
  const fraction = e.queue_limit ? Math.min(1, e.queue_depth / e.queue_limit) : 0;
  const text = `${e.queue_depth} / ${e.queue_limit} waiting`;
  return h("div", { class: "progress serving-queue" },
    h("div", { class: "progress-label" }, h("span", { class: "muted" }, "Queue "),
      h("strong", { dataset: { stat: "queue" } }, text)),
    h("div", {
      class: `bar${fraction >= 0.75 ? " status-failed" : ""}`, role: "meter", "aria-label": `queue: ${text}`,
      "aria-valuemin": "0", "aria-valuemax": String(e.queue_limit), "aria-valuenow": String(e.queue_depth),
    }, h("span", { style: { width: `${(fraction * 100).toFixed(1)}%` } })),
    h("div", { class: "muted small" }, `a request beyond ${e.queue_limit} per model is refused with 503`));
}

function sizeChart(e) {
  const keys = Object.keys(e.batch_sizes).sort((a, b) => Number(a) - Number(b));
  const labels = bucketLabels(keys);
  const top = Math.max(1, ...keys.map((k) => e.batch_sizes[k]));
  return h("figure", { class: "size-chart" },
    h("div", { class: "size-bars", role: "img",
      "aria-label": `batch sizes of the last ${e.recent_batches} batches: `
        + keys.map((k, i) => `${labels[i]}: ${e.batch_sizes[k]}`).join(", ") },
    keys.map((key, i) => {
      const count = e.batch_sizes[key];
      const beyond = i > 0 && Number(keys[i - 1]) >= e.max_batch; // no batch can be this large
      return h("div", { class: `size-col${beyond ? " beyond" : ""}`, dataset: { bucket: key, count: String(count) },
        title: `${count} batch${count === 1 ? "" : "es"} of ${labels[i]} ${UNITS[e.endpoint] || "items"}` },
      h("span", { class: "size-count" }, count ? String(count) : ""),
      h("span", { class: "size-track" },
        h("span", { class: "size-bar", style: { height: `${((count / top) * 100).toFixed(1)}%` } })),
      h("span", { class: "size-label" }, labels[i]));
    })),
    h("figcaption", { class: "muted small" },
      `Batch sizes (${UNITS[e.endpoint] || "items"} per model call) of the last ${e.recent_batches} `
      + `batch${e.recent_batches === 1 ? "" : "es"}; at most ${e.max_batch} per call`));
}

function timesTable(e) {
  const cols = ["p50", "p90", "p99", "max"];
  const row = (label, key, values) => h("tr", { dataset: { times: key } },
    h("th", { scope: "row" }, label),
    cols.map((c) => h("td", { class: "mono", dataset: { p: c, value: values[c] === null ? "" : String(values[c]) } },
      num(values[c], 3))));
  return h("table", { class: "serving-times" },
    h("caption", { class: "muted small" }, "Milliseconds, over the same recent batches"),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Time, ms"), cols.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {},
      row("Queue wait", "queue_wait_ms", e.queue_wait_ms),
      row("Model time", "batch_ms", e.batch_ms)));
}

function endpointCard(e) {
  const served = e.batches > 0;
  let body;
  if (!served) {
    body = h("div", { class: "empty serving-empty" },
      h("p", {}, "No requests served yet."),
      h("p", { class: "small" }, e.batching
        ? `Figures appear here once /${e.endpoint} has answered a request.`
        : "Batching is off (INKWELL_BATCHING=false): each request calls the model on its own and is "
          + "not counted here."));
  } else {
    body = [sizeChart(e), timesTable(e)];
  }
  return h("article", { class: "card serving-card", dataset: { endpoint: e.endpoint } },
    h("div", { class: "serving-head" },
      h("h2", {}, TITLES[e.endpoint] || `/${e.endpoint}`),
      h("span", { class: `badge ${e.batching ? "status-succeeded" : "status-cancelled"}`,
        dataset: { stat: "batching" } }, e.batching ? "batching on" : "batching off"),
      h("span", { class: "muted small", dataset: { stat: "models" } },
        `${e.models_loaded} model${e.models_loaded === 1 ? "" : "s"} loaded`)),
    queueView(e),
    h("dl", { class: "serving-facts" },
      fact("Batches", String(e.batches), "batches", "model calls since this API process started"),
      fact("Items", String(e.items), "items", `${UNITS[e.endpoint] || "items"} answered by those calls`),
      fact("Rejected (503)", String(e.rejected), "rejected", "requests refused because the queue was full"),
      fact("Mean batch", e.mean_batch_size === null ? "—" : num(e.mean_batch_size, 3), "mean",
        "mean batch size over the recent batches")),
    body);
}

export async function render(root) {
  const status = h("div", { class: "live-error" });
  const updated = h("span", { class: "muted small", id: "serving-updated" }, "");
  const cards = h("div", { class: "grid two", id: "serving-cards" });
  replace(root, h("section", { class: "page" },
    h("div", { class: "page-head" },
      h("div", {}, h("h1", {}, "Serving"),
        h("p", { class: "muted" }, "This API process's dynamic batchers: queue, batch sizes and times, ",
          "refreshed every 2 s. Prometheus histograms of the same are on ",
          h("a", { href: "/metrics" }, "/metrics"), ".")),
      updated),
    status,
    cards));

  let stopped = false;
  let timer = null;
  async function refresh() {
    clearTimeout(timer);
    try {
      const stats = await request("GET", "/serving/stats");
      if (stopped) return;
      replace(status);
      replace(cards, stats.endpoints.map(endpointCard));
      replace(updated, `updated ${new Date().toLocaleTimeString()}`);
    } catch (err) {
      if (stopped) return;
      replace(status, errorBox(err, "Could not load the serving stats:"));
      if (!cards.children.length) replace(updated, "");
      else replace(updated, "showing the last figures received");
    }
    if (!stopped) timer = setTimeout(refresh, POLL_MS);
  }

  await refresh();

  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
