// Charts with Plotly (served from the installed Python package at /static/vendor/plotly.min.js)
// and activation-map heatmaps drawn straight on small canvases.

const FONT = { family: "Inter, system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size: 12 };
export const PALETTE = ["#4f46e5", "#0ea5e9", "#f59e0b", "#10b981", "#ef4444", "#a855f7", "#14b8a6", "#f97316"];
const CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] };
const STATIC_CONFIG = { ...CONFIG, displayModeBar: false }; // nothing worth zooming into

function plotly() {
  if (!window.Plotly) throw new Error("the chart library did not load (/static/vendor/plotly.min.js)");
  return window.Plotly;
}

function cssVar(name, fallback) {
  const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return v || fallback;
}

function baseLayout(extra = {}) {
  const text = cssVar("--text-muted", "#475569");
  const grid = cssVar("--grid", "#e2e8f0");
  return {
    font: { ...FONT, color: text },
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "rgba(0,0,0,0)",
    margin: { l: 56, r: 16, t: 16, b: 44 },
    hoverlabel: { font: FONT },
    xaxis: { gridcolor: grid, zerolinecolor: grid, linecolor: grid },
    yaxis: { gridcolor: grid, zerolinecolor: grid, linecolor: grid },
    legend: { orientation: "h", y: 1.02, yanchor: "bottom", x: 1, xanchor: "right" },
    ...extra,
  };
}

/**
 * Line chart of per-epoch values. series: [{name, x: epochs, y: values, color?}].
 * Hovering shows every series' value at that epoch.
 */
export function lineChart(el, series, { title = "", yTitle = "", percent = false, totalEpochs = null } = {}) {
  const traces = series.map((s, i) => ({
    type: "scatter",
    mode: "lines+markers",
    name: s.name,
    x: s.x,
    y: s.y,
    line: { color: s.color || PALETTE[i % PALETTE.length], width: 2.5 },
    marker: { size: 7 },
    hovertemplate: percent ? "%{y:.2%}" : "%{y:.4g}",
  }));
  const maxX = Math.max(1, totalEpochs || 0, ...series.flatMap((s) => s.x));
  const layout = baseLayout({
    title: title ? { text: title, font: { ...FONT, size: 14 }, x: 0, xanchor: "left" } : undefined,
    margin: { l: 56, r: 16, t: title || series.length > 1 ? 36 : 12, b: 44 },
    hovermode: "x unified",
    showlegend: series.length > 1,
  });
  layout.xaxis = { ...layout.xaxis, title: { text: "epoch" }, range: [0.7, maxX + 0.3], dtick: maxX <= 20 ? 1 : null };
  layout.yaxis = { ...layout.yaxis, title: { text: yTitle }, tickformat: percent ? ".0%" : null };
  if (!series.some((s) => s.x.length)) {
    layout.yaxis.showticklabels = false;
    layout.annotations = [{ text: "no finished epoch yet", showarrow: false, xref: "paper", yref: "paper",
      x: 0.5, y: 0.5, font: { ...FONT, size: 13 } }];
  }
  return plotly().react(el, traces, layout, CONFIG);
}

/** Horizontal bars of class probabilities, most likely on top. rows: [{label, probability}]. */
export function probabilityBars(el, rows) {
  const ordered = [...rows].reverse();
  const accent = cssVar("--accent", "#4f46e5");
  const faint = cssVar("--accent-soft", "#c7d2fe");
  const trace = {
    type: "bar",
    orientation: "h",
    x: ordered.map((r) => r.probability),
    y: ordered.map((r) => r.label),
    marker: { color: ordered.map((_, i) => (i === ordered.length - 1 ? accent : faint)) },
    text: ordered.map((r) => `${(r.probability * 100).toFixed(1)}%`),
    textposition: "outside",
    cliponaxis: false,
    hovertemplate: "%{y}: %{x:.2%}<extra></extra>",
  };
  const layout = baseLayout({ margin: { l: 90, r: 48, t: 8, b: 32 }, showlegend: false, bargap: 0.35 });
  layout.xaxis = { ...layout.xaxis, range: [0, 1.05], tickformat: ".0%" };
  layout.yaxis = { ...layout.yaxis, automargin: true, type: "category" };
  return plotly().react(el, [trace], layout, STATIC_CONFIG);
}

/** Attention heatmap: rows = output characters, columns = input characters (labels may repeat). */
export function attentionHeatmap(el, matrix, inputChars, outputChars) {
  const show = (c) => (c === " " ? "␣" : c);
  const xs = inputChars.map((_, i) => i);
  const ys = outputChars.map((_, i) => i);
  const trace = {
    type: "heatmap",
    z: matrix,
    x: xs,
    y: ys,
    colorscale: "Viridis",
    zmin: 0,
    zmax: 1,
    customdata: outputChars.map((o) => inputChars.map((c) => `${show(o)} ← ${show(c)}`)),
    hovertemplate: "%{customdata}: %{z:.3f}<extra></extra>",
    colorbar: { thickness: 10, len: 0.9 },
  };
  const layout = baseLayout({ margin: { l: 48, r: 16, t: 8, b: 48 }, showlegend: false });
  layout.xaxis = { tickvals: xs, ticktext: inputChars.map(show), title: { text: "input" }, side: "bottom",
    showgrid: false, tickangle: 0, automargin: true };
  layout.yaxis = { tickvals: ys, ticktext: outputChars.map(show), title: { text: "output", standoff: 8 },
    autorange: "reversed", showgrid: false, automargin: true };
  const cell = 22;
  el.style.height = `${Math.max(180, Math.min(640, outputChars.length * cell + 70))}px`;
  return plotly().react(el, [trace], layout, CONFIG);
}

/**
 * Confusion matrix as a heatmap: rows = true class, columns = predicted class, each cell's count written
 * in it; colours by the share of its row (so rare classes read as well as common ones).
 */
export function confusionHeatmap(el, matrix, classes) {
  const labels = classes.map(String);
  const shares = matrix.map((row) => {
    const total = row.reduce((a, b) => a + b, 0);
    return row.map((v) => (total ? v / total : 0));
  });
  const trace = {
    type: "heatmap",
    z: shares,
    x: labels,
    y: labels,
    text: matrix.map((row) => row.map(String)),
    texttemplate: "%{text}",
    textfont: { size: labels.length > 12 ? 9 : 11 },
    colorscale: [[0, cssVar("--surface-2", "#f1f3f9")], [1, cssVar("--accent", "#4f46e5")]],
    zmin: 0,
    zmax: 1,
    customdata: matrix,
    hovertemplate: "true %{y}, predicted %{x}: %{customdata} (%{z:.1%} of the row)<extra></extra>",
    colorbar: { thickness: 10, len: 0.9, tickformat: ".0%" },
  };
  const layout = baseLayout({ margin: { l: 56, r: 16, t: 8, b: 48 }, showlegend: false });
  layout.xaxis = { title: { text: "predicted" }, type: "category", showgrid: false, automargin: true, tickangle: 0 };
  layout.yaxis = { title: { text: "true", standoff: 8 }, type: "category", autorange: "reversed", showgrid: false,
    automargin: true };
  el.style.height = `${Math.max(260, Math.min(560, labels.length * 34 + 90))}px`;
  return plotly().react(el, [trace], layout, STATIC_CONFIG);
}

export function purge(el) {
  if (window.Plotly && el) window.Plotly.purge(el);
}

// ---- activation maps on canvases ------------------------------------------------------------------

// Viridis colour stops (position, r, g, b).
const VIRIDIS = [
  [0, 68, 1, 84], [0.25, 59, 82, 139], [0.5, 33, 145, 140], [0.75, 94, 201, 98], [1, 253, 231, 37],
];

function viridis(t) {
  const x = Math.min(1, Math.max(0, t));
  for (let i = 1; i < VIRIDIS.length; i += 1) {
    const [p1, r1, g1, b1] = VIRIDIS[i];
    const [p0, r0, g0, b0] = VIRIDIS[i - 1];
    if (x <= p1) {
      const f = (x - p0) / (p1 - p0);
      return [r0 + f * (r1 - r0), g0 + f * (g1 - g0), b0 + f * (b1 - b0)];
    }
  }
  return VIRIDIS[VIRIDIS.length - 1].slice(1);
}

/**
 * One map (H x W numbers) as a canvas, coloured with viridis scaled to [0, max of the map]
 * (an all-zero map stays dark). The canvas has one pixel per value; CSS scales it up crisply.
 */
export function heatmapCanvas(values, label) {
  const hgt = values.length;
  const wid = hgt ? values[0].length : 0;
  const canvas = document.createElement("canvas");
  canvas.width = wid;
  canvas.height = hgt;
  canvas.className = "heat";
  canvas.setAttribute("role", "img");
  let top = 0;
  for (const row of values) for (const v of row) top = Math.max(top, v);
  canvas.setAttribute("aria-label", `${label}, peak ${top.toFixed(3)}`);
  canvas.title = `${label} · peak ${top.toFixed(3)}`;
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(wid, hgt);
  for (let y = 0; y < hgt; y += 1) {
    for (let x = 0; x < wid; x += 1) {
      const [r, g, b] = viridis(top > 0 ? values[y][x] / top : 0);
      const o = (y * wid + x) * 4;
      image.data[o] = r;
      image.data[o + 1] = g;
      image.data[o + 2] = b;
      image.data[o + 3] = 255;
    }
  }
  ctx.putImageData(image, 0, 0);
  canvas.dataset.peak = String(top);
  return canvas;
}
