// Classify: draw a character (mouse, pen or touch) or drop an image; see the 28x28 input the model
// sees, the top-k probabilities and the conv1/conv2 activation maps for that input.

import { api } from "../api.js";
import { errorBox, h, notice, replace } from "../dom.js";
import { heatmapCanvas, probabilityBars, purge } from "../charts.js";
import { pct, shortId } from "../format.js";

const SIDE = 280; // canvas pixels
const PEN = 20; // stroke width in canvas pixels (the strokes end up ~2 px wide in 28x28)
const TOP_K = 5;

export async function render(root) {
  const canvas = h("canvas", { width: SIDE, height: SIDE, class: "draw", id: "draw-canvas", tabindex: "0",
    "aria-label": "Drawing area: draw a character with the mouse, a pen or a finger" });
  const ctx = canvas.getContext("2d");
  const runSelect = h("select", { id: "classify-run", "aria-label": "Model run" });
  const fileInput = h("input", { type: "file", accept: "image/*", id: "classify-file", class: "sr-only" });
  const dropZone = h("div", { class: "drop-zone", id: "drop-zone" }, canvas,
    h("div", { class: "drop-hint", "aria-hidden": "true" }, "Drop an image"));
  const runNote = h("div");
  const status = h("div", { "aria-live": "polite" });
  const inputImg = h("img", { class: "pixelated", id: "model-input", alt: "the 28x28 image the model sees", hidden: true });
  const verdict = h("div", { class: "verdict", id: "verdict" },
    h("p", { class: "muted" }, "Draw a character on the left: the answer appears when you lift the pen."));
  const bars = h("div", { class: "chart bars", id: "topk-chart" });
  const conv1 = h("div", { class: "maps", id: "maps-conv1", "data-layer": "conv1" });
  const conv2 = h("div", { class: "maps", id: "maps-conv2", "data-layer": "conv2" });

  replace(root, h("section", { class: "page" },
    h("div", { class: "page-head" }, h("div", {}, h("h1", {}, "Classify"),
      h("p", { class: "muted" }, "Draw a character or drop an image; the CNN answers as you lift the pen."))),
    h("div", { class: "grid classify" },
      h("div", { class: "card" },
        h("h2", {}, "Input"),
        h("div", { class: "field" }, h("label", { for: "classify-run" }, "Model"), runSelect),
        runNote,
        dropZone,
        h("div", { class: "row" },
          h("button", { type: "button", class: "btn", id: "clear-canvas", onclick: clear }, "Clear"),
          fileInput, h("label", { class: "btn", for: "classify-file" }, "Choose image…"),
          h("button", { type: "button", class: "btn primary push", id: "classify-button", onclick: () => classify() },
            "Classify")),
        h("p", { class: "hint" }, "Any image works: dark on light or light on dark, any size.")),
      h("div", { class: "card" },
        h("h2", {}, "Prediction"), status,
        h("div", { class: "prediction" },
          h("figure", { class: "model-input", id: "model-input-figure", hidden: true }, inputImg,
            h("figcaption", { class: "muted small" }, "what the model sees (28×28)")),
          verdict),
        bars)),
    h("div", { class: "card" },
      h("h2", {}, "Activation maps"),
      h("p", { class: "muted small" }, "After ReLU, each map scaled to its own peak (hover for the value)."),
      h("h3", {}, "conv1 · 8 maps of 28×28"), conv1,
      h("h3", {}, "conv2 · 16 maps of 12×12"), conv2)));

  // ---- model picker ----
  try {
    const [runs, models] = await Promise.all([api.runs({ status: "succeeded", model: "cnn", limit: 200 }), api.models()]);
    const info = models.find((m) => m.model === "cnn");
    const servingId = info ? info.serving_run_id : null;
    replace(runSelect, runs.map((r) => h("option", { value: r.id, selected: r.id === servingId },
      `${shortId(r.id)} · ${r.dataset} · acc ${pct(r.best_val_metric)}${r.id === servingId ? ` (serving, ${info.serving_source})` : ""}`)));
    if (!runs.length) {
      replace(runNote, notice("No trained CNN yet: start one on the New training page, then come back.", "warning"));
    }
  } catch (err) {
    replace(runNote, errorBox(err, "Could not list the models:"));
  }

  // ---- drawing ----
  let source = null; // a File/Blob the user gave, else the canvas
  let drawing = false;
  let inked = false;
  let last = null;
  const paper = () => {
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, SIDE, SIDE);
  };
  paper();
  const at = (event) => {
    const rect = canvas.getBoundingClientRect();
    return [(event.clientX - rect.left) * (SIDE / rect.width), (event.clientY - rect.top) * (SIDE / rect.height)];
  };
  const dot = ([x, y]) => {
    ctx.fillStyle = "#111827";
    ctx.beginPath();
    ctx.arc(x, y, PEN / 2, 0, Math.PI * 2);
    ctx.fill();
  };
  canvas.addEventListener("pointerdown", (event) => {
    if (event.button !== 0 && event.pointerType === "mouse") return;
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    if (source) { // drawing over a dropped image starts a fresh drawing
      source = null;
      paper();
    }
    drawing = true;
    last = at(event);
    dot(last);
    inked = true;
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
    for (const e of events.length ? events : [event]) {
      const p = at(e);
      ctx.strokeStyle = "#111827";
      ctx.lineWidth = PEN;
      ctx.lineCap = "round";
      ctx.lineJoin = "round";
      ctx.beginPath();
      ctx.moveTo(...last);
      ctx.lineTo(...p);
      ctx.stroke();
      last = p;
    }
  });
  const end = () => {
    if (!drawing) return;
    drawing = false;
    classify();
  };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);

  function clear() {
    source = null;
    inked = false;
    paper();
    replace(status);
    replace(verdict);
    inputImg.parentElement.hidden = true;
    purge(bars);
    replace(conv1);
    replace(conv2);
  }

  // ---- files: choose or drop ----
  const useFile = async (file) => {
    if (!file) return;
    source = file;
    inked = true;
    paper();
    try {
      const bitmap = await createImageBitmap(file);
      const scale = Math.min(SIDE / bitmap.width, SIDE / bitmap.height);
      const w = bitmap.width * scale;
      const hh = bitmap.height * scale;
      ctx.drawImage(bitmap, (SIDE - w) / 2, (SIDE - hh) / 2, w, hh);
    } catch {
      // the browser cannot preview it; the server still says what it thinks of the file
    }
    classify();
  };
  fileInput.addEventListener("change", () => useFile(fileInput.files[0]));
  // A file dropped anywhere on this page is classified (instead of the browser opening it).
  const onDragOver = (event) => {
    event.preventDefault();
    dropZone.classList.add("over");
  };
  const onDragLeave = (event) => {
    if (!event.relatedTarget) dropZone.classList.remove("over");
  };
  const onDrop = (event) => {
    event.preventDefault();
    dropZone.classList.remove("over");
    if (event.dataTransfer && event.dataTransfer.files.length) useFile(event.dataTransfer.files[0]);
  };
  window.addEventListener("dragover", onDragOver);
  window.addEventListener("dragleave", onDragLeave);
  window.addEventListener("drop", onDrop);

  // ---- asking the model ----
  let asked = 0;
  async function classify() {
    if (!inked) {
      replace(status, notice("Draw something first, or choose an image.", "warning"));
      return;
    }
    const ticket = ++asked;
    const image = source || await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
    const runId = runSelect.value || undefined;
    replace(status, h("p", { class: "muted small" }, "Asking the model…"));
    try {
      const [answer, maps1, maps2] = await Promise.all([
        api.predict(image, runId, TOP_K),
        api.activationMaps(image, "conv1", runId),
        api.activationMaps(image, "conv2", runId),
      ]);
      if (ticket !== asked) return;
      replace(status, h("p", { class: "muted small" }, `answered by run ${shortId(answer.run_id)}`));
      inputImg.src = answer.input_png;
      inputImg.hidden = false;
      inputImg.parentElement.hidden = false;
      const best = answer.top_k[0];
      replace(verdict, h("div", { class: "verdict-label" }, best.class_name),
        h("div", { class: "muted" }, `${pct(best.probability)} sure · label ${best.label}`));
      probabilityBars(bars, answer.top_k.map((t) => ({ label: t.class_name, probability: t.probability })));
      drawMaps(conv1, maps1);
      drawMaps(conv2, maps2);
    } catch (err) {
      if (ticket === asked) replace(status, errorBox(err));
    }
  }

  return () => {
    asked += 1;
    purge(bars);
    window.removeEventListener("dragover", onDragOver);
    window.removeEventListener("dragleave", onDragLeave);
    window.removeEventListener("drop", onDrop);
  };
}

function drawMaps(container, answer) {
  replace(container, answer.maps.map((map, i) => {
    const canvas = heatmapCanvas(map, `${answer.layer} channel ${i + 1}`);
    const caption = h("figcaption", {}, `#${i + 1}`);
    canvas.addEventListener("pointermove", (event) => {
      const rect = canvas.getBoundingClientRect();
      const x = Math.min(map[0].length - 1, Math.floor(((event.clientX - rect.left) / rect.width) * map[0].length));
      const y = Math.min(map.length - 1, Math.floor(((event.clientY - rect.top) / rect.height) * map.length));
      if (x >= 0 && y >= 0) caption.textContent = `#${i + 1} · ${map[y][x].toFixed(3)}`;
    });
    canvas.addEventListener("pointerleave", () => { caption.textContent = `#${i + 1}`; });
    return h("figure", { class: "map" }, canvas, caption);
  }));
}
