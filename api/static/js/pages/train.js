// New training: a form for both models with the assignment's defaults, a learning-rate sweep option,
// and the API's own validation messages shown next to the fields they concern.

import { api } from "../api.js";
import { banner, h, replace } from "../dom.js";

const SWEEP_RATES = "0.01, 0.0005, 0.00001";

// The assignment's defaults (ml.config.DEFAULTS / TrainConfig), as the form shows them.
const DEFAULTS = {
  cnn: { dataset: "kmnist", learning_rate: "0.0005", epochs: "20", batch_size: "8", optimizer: "adam",
    dropout: "0.3", l2_decay: "0", seed: "42", limit: "" },
  seq2seq: { dataset: "spa-eng", attention: true, learning_rate: "0.003", epochs: "50", batch_size: "64",
    hidden_size: "128", dropout: "0.3", optimizer: "adam", seed: "42", limit: "", max_length: "20",
    direction: "spa-eng" },
};

// name, label, kind (number|select|checkbox), hint; per model, main fields then advanced ones.
const FIELDS = {
  cnn: {
    main: [
      ["learning_rate", "Learning rate", "number", "> 0"],
      ["epochs", "Epochs", "number", "1 to 500"],
      ["batch_size", "Batch size", "number"],
      ["optimizer", "Optimizer", ["adam", "sgd"]],
      ["dropout", "Dropout", "number", "0 to < 1"],
      ["l2_decay", "L2 weight decay", "number", "≥ 0"],
      ["seed", "Seed", "number"],
    ],
    advanced: [["limit", "Examples per split (limit)", "number", "empty = all; small values for quick trials"]],
  },
  seq2seq: {
    main: [
      ["attention", "Attention", "checkbox", "bilinear attention over the encoder states"],
      ["learning_rate", "Learning rate", "number", "> 0"],
      ["epochs", "Epochs", "number", "1 to 500"],
      ["batch_size", "Batch size", "number"],
      ["hidden_size", "Hidden size", "number", "8 to 1024"],
      ["dropout", "Dropout", "number", "0 to < 1"],
    ],
    advanced: [
      ["limit", "Examples per split (limit)", "number", "empty = all; small values for quick trials"],
      ["optimizer", "Optimizer", ["adam", "sgd"]],
      ["seed", "Seed", "number"],
      ["max_length", "Max sentence length", "number", "keep shorter pairs"],
      ["direction", "Direction", ["spa-eng", "eng-spa"]],
    ],
  },
};

/** A field's text as JSON: numbers as numbers, anything else as typed (so the API judges it). */
function asValue(text) {
  const t = String(text).trim();
  if (t === "") return undefined;
  const n = Number(t);
  return Number.isFinite(n) ? n : t;
}

export async function render(root, { query }) {
  const values = { cnn: { ...DEFAULTS.cnn }, seq2seq: { ...DEFAULTS.seq2seq } };
  let model = query.get("model") === "seq2seq" ? "seq2seq" : "cnn";
  let sweep = query.get("sweep") === "1";
  let rates = SWEEP_RATES;
  let datasets = [];
  let datasetError = null;
  try {
    datasets = await api.datasets();
  } catch (err) {
    datasetError = err;
  }

  const formAlert = h("div", { id: "form-error", "aria-live": "assertive" });
  const fieldsBox = h("div");
  const submit = h("button", { type: "submit", class: "btn primary", id: "train-submit" }, "Start training");
  const form = h("form", { class: "card form", id: "train-form", novalidate: true, onsubmit: onSubmit },
    h("fieldset", { class: "segmented" },
      h("legend", {}, "Model"),
      ["cnn", "seq2seq"].map((m) => h("label", { class: "segment" },
        h("input", { type: "radio", name: "model", value: m, checked: m === model,
          onchange: () => { model = m; drawFields(); } }),
        h("span", {}, m === "cnn" ? "CNN · image classifier" : "Seq2seq · Spanish → English")))),
    fieldsBox, formAlert,
    h("div", { class: "form-actions" }, submit,
      h("button", { type: "button", class: "btn ghost", onclick: () => {
        values[model] = { ...DEFAULTS[model] };
        rates = SWEEP_RATES;
        drawFields();
      } }, "Reset to defaults")));

  replace(root, h("section", { class: "page narrow" },
    h("div", { class: "page-head" }, h("div", {}, h("h1", {}, "New training"),
      h("p", { class: "muted" }, "The assignment's defaults are filled in; the server checks every value."))),
    form));

  function field(name, label, kind, hint) {
    const id = `train-${name}`;
    const error = h("p", { class: "field-error", id: `${id}-error`, "data-error-for": name, hidden: true });
    const described = [hint ? `${id}-hint` : null, `${id}-error`].filter(Boolean).join(" ");
    const store = (v) => { values[model][name] = v; };
    let input;
    if (kind === "checkbox") {
      input = h("input", { type: "checkbox", id, name, checked: Boolean(values[model][name]),
        "aria-describedby": described, onchange: (e) => store(e.target.checked) });
      return h("div", { class: "field check" }, h("label", { for: id }, input, " ", label),
        hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null, error);
    }
    if (Array.isArray(kind)) {
      input = h("select", { id, name, "aria-describedby": described, onchange: (e) => store(e.target.value) },
        kind.map((o) => h("option", { value: o, selected: values[model][name] === o }, o)));
    } else {
      input = h("input", { type: "text", inputmode: "decimal", id, name, value: values[model][name] ?? "",
        autocomplete: "off", "aria-describedby": described, oninput: (e) => store(e.target.value) });
    }
    return h("div", { class: "field" }, h("label", { for: id }, label), input,
      hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null, error);
  }

  function datasetField() {
    const id = "train-dataset";
    const mine = datasets.filter((d) => d.model === model);
    if (!mine.some((d) => d.name === values[model].dataset) && mine.length) values[model].dataset = mine[0].name;
    const hint = h("p", { class: "hint", id: `${id}-hint` });
    const describe = () => {
      const d = mine.find((x) => x.name === values[model].dataset);
      hint.textContent = !d ? "" : `${d.kind === "images" ? "images" : "text pairs"}${d.builtin ? " · built in" : ""}`
        + (d.available ? "" : " · downloaded on first use");
    };
    const select = h("select", { id, name: "dataset", "aria-describedby": `${id}-hint ${id}-error`,
      onchange: (e) => { values[model].dataset = e.target.value; describe(); } },
    mine.map((d) => h("option", { value: d.name, selected: d.name === values[model].dataset }, d.name)));
    describe();
    return h("div", { class: "field" }, h("label", { for: id }, "Dataset"),
      datasetError ? h("p", { class: "field-error" }, `Could not list the datasets: ${datasetError.message}`) : select,
      hint, h("p", { class: "field-error", id: `${id}-error`, "data-error-for": "dataset", hidden: true }));
  }

  function sweepField() {
    const id = "train-learning_rates";
    return h("div", { class: "field wide sweep" },
      h("label", { class: "check" }, h("input", { type: "checkbox", id: "train-sweep", checked: sweep,
        onchange: (e) => { sweep = e.target.checked; drawFields(); } }), " Learning-rate sweep (one run per rate)"),
      sweep ? [h("label", { for: id }, "Learning rates"),
        h("input", { type: "text", id, name: "learning_rates", value: rates, "aria-describedby": `${id}-error`,
          oninput: (e) => { rates = e.target.value; } }),
        h("p", { class: "hint" }, "comma-separated; the runs are queued together")] : null,
      h("p", { class: "field-error", id: `${id}-error`, "data-error-for": "learning_rates", hidden: true }));
  }

  function drawFields() {
    clearErrors();
    const spec = FIELDS[model];
    const main = spec.main.filter(([name]) => !(sweep && name === "learning_rate"));
    replace(fieldsBox,
      h("div", { class: "fields" }, datasetField(), main.map((f) => field(...f)), sweepField()),
      h("details", { class: "advanced" }, h("summary", {}, "Advanced"),
        h("div", { class: "fields" }, spec.advanced.map((f) => field(...f)))));
  }

  function body() {
    const out = { model };
    const names = [...FIELDS[model].main, ...FIELDS[model].advanced].map(([name]) => name);
    out.dataset = values[model].dataset || undefined;
    for (const name of names) {
      if (sweep && name === "learning_rate") continue;
      const v = values[model][name];
      out[name] = typeof v === "boolean" ? v : asValue(v);
    }
    if (sweep) out.learning_rates = rates.split(/[\s,;]+/).filter(Boolean).map(asValue);
    return out;
  }

  function clearErrors() {
    replace(formAlert);
    for (const el of form.querySelectorAll("[data-error-for]")) {
      el.hidden = true;
      el.textContent = "";
    }
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  }

  function showErrors(err) {
    const unplaced = [];
    const place = (fieldName, message) => {
      const root = fieldName.split(".")[0];
      const slot = form.querySelector(`[data-error-for="${root}"]`);
      if (!slot) return false;
      slot.textContent = slot.textContent ? `${slot.textContent}; ${message}` : message;
      slot.hidden = false;
      form.querySelector(`[name="${root}"]`)?.setAttribute("aria-invalid", "true");
      return true;
    };
    for (const e of err.errors || []) {
      if (!place(e.field, e.message)) unplaced.push(`${e.field}: ${e.message}`);
    }
    if (!(err.errors || []).length && /dataset/i.test(err.message)) place("dataset", err.message);
    replace(formAlert, h("div", { class: "alert error", role: "alert" },
      h("strong", {}, err.status === 422 ? "The server refused these values: " : "Could not start the training: "),
      err.message));
    for (const details of form.querySelectorAll("details")) {
      if (details.querySelector("[aria-invalid]")) details.open = true;
    }
    const firstBad = form.querySelector("[aria-invalid]");
    if (firstBad) firstBad.focus();
    return unplaced;
  }

  async function onSubmit(event) {
    event.preventDefault();
    clearErrors();
    submit.disabled = true;
    submit.textContent = "Queuing…";
    try {
      const answer = await api.train(body());
      const n = answer.run_ids.length;
      banner(n > 1 ? `Queued a sweep of ${n} runs.` : `Queued run ${answer.run_id.slice(0, 8)}.`, "success");
      window.location.hash = answer.sweep_id ? `#/sweeps/${answer.sweep_id}` : `#/runs/${answer.run_id}`;
    } catch (err) {
      showErrors(err);
    } finally {
      submit.disabled = false;
      submit.textContent = "Start training";
    }
  }

  drawFields();
  return null;
}
