// New training: a form for both models with the assignment's defaults, a learning-rate sweep option,
// and the API's own validation messages shown next to the fields they concern. Next to the dataset
// select, a dataset can be uploaded (POST /datasets) and is then selected.

import { api, uploadDataset } from "../api.js";
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

// What the upload's file picker offers first. IDX files (train-images-idx3-ubyte) have no extension to
// filter on: browsers add an "All files" choice to the picker, and the hint says so.
const UPLOAD_ACCEPT = ".txt,.gz,.zip,.tar.gz,.tgz";

/** 1234567 -> "1.2 MB". */
function bytesText(n) {
  if (!Number.isFinite(n)) return "";
  if (n < 1000) return `${n} B`;
  const units = ["kB", "MB", "GB"];
  let v = n;
  let unit = "B";
  for (const u of units) {
    if (v < 1000) break;
    v /= 1000;
    unit = u;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${unit}`;
}

/** {train: 8, val: 4} -> "train 8 · val 4" (the API's counts, in its order). */
function countsText(counts) {
  return Object.entries(counts || {}).map(([k, v]) => `${k} ${Number(v).toLocaleString("en")}`).join(" · ");
}

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

  const upload = uploadSection();

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

  // "Upload a dataset": a name, the files, an Upload button; progress while the files go out, then the
  // dataset's kind, counts and hash, and the new dataset selected above (the API's detail on a refusal).
  // Not a <form> of its own (forms do not nest): Enter in the name uploads instead of starting a training.
  function uploadSection() {
    const nameInput = h("input", { type: "text", id: "upload-name", name: "upload_name", autocomplete: "off",
      spellcheck: "false", maxlength: "100", placeholder: "e.g. my-pairs", "aria-describedby": "upload-name-hint",
      onkeydown: (e) => { if (e.key === "Enter") { e.preventDefault(); start(); } } });
    const fileInput = h("input", { type: "file", id: "upload-files", name: "upload_files", multiple: true,
      accept: UPLOAD_ACCEPT, "aria-describedby": "upload-files-hint", onchange: () => describeFiles() });
    const chosen = h("p", { class: "hint", id: "upload-chosen", "aria-live": "polite" });
    const button = h("button", { type: "button", class: "btn", id: "upload-submit", onclick: () => start() },
      "Upload");
    const cancel = h("button", { type: "button", class: "btn ghost", id: "upload-cancel", hidden: true,
      onclick: () => controller && controller.abort() }, "Cancel");
    const bar = h("progress", { id: "upload-progress", max: 100, "aria-label": "Upload progress" });
    const barText = h("span", { class: "upload-progress-text" });
    const progress = h("div", { class: "upload-progress", hidden: true }, bar, barText);
    const status = h("div", { id: "upload-status", "aria-live": "polite" });
    let controller = null;

    function describeFiles() {
      const files = [...fileInput.files];
      const total = files.reduce((n, f) => n + f.size, 0);
      chosen.textContent = files.length
        ? `${files.length} file${files.length > 1 ? "s" : ""} (${bytesText(total)}): ${files.map((f) => f.name).join(", ")}`
        : "";
    }

    function busy(on) {
      controller = on ? new AbortController() : null;
      button.disabled = on;
      button.textContent = on ? "Uploading…" : "Upload";
      nameInput.disabled = on;
      fileInput.disabled = on;
      cancel.hidden = !on;
      progress.hidden = !on;
      section.setAttribute("aria-busy", on ? "true" : "false");
    }

    function showProgress(sent, total) {
      if (total > 0) {
        const pct = Math.min(100, Math.floor((100 * sent) / total));
        bar.value = pct;
        barText.textContent = `Uploading… ${pct}% of ${bytesText(total)}`;
      } else {
        bar.removeAttribute("value");
        barText.textContent = `Uploading… ${bytesText(sent)}`;
      }
    }

    function fail(message, prefix = "Upload refused: ") {
      replace(status, h("div", { class: "alert error", role: "alert" }, h("strong", {}, prefix), message));
      if (!section.isConnected) banner(`Dataset upload failed: ${message}`, "error");
    }

    async function start() {
      if (controller) return;
      const name = nameInput.value.trim();
      const files = [...fileInput.files];
      if (!name) {
        fail("give the dataset a name.", "Cannot upload yet: ");
        nameInput.focus();
        return;
      }
      if (!files.length) {
        fail("choose the dataset's files first.", "Cannot upload yet: ");
        fileInput.focus();
        return;
      }
      replace(status);
      busy(true);
      showProgress(0, files.reduce((n, f) => n + f.size, 0));
      try {
        const { dataset, created } = await uploadDataset(name, files, {
          signal: controller.signal,
          onProgress: showProgress,
          onSent: () => {
            bar.removeAttribute("value"); // indeterminate: the server checks the files now
            barText.textContent = "Uploaded; the server is checking the files…";
          },
        });
        await uploaded(dataset, created);
        nameInput.value = "";
        fileInput.value = "";
        describeFiles();
      } catch (err) {
        if (err && err.name === "AbortError") fail("the upload was cancelled; nothing was stored.", "Cancelled: ");
        else fail(err && err.message ? err.message : String(err));
      } finally {
        busy(false);
      }
    }

    async function uploaded(dataset, created) {
      try {
        datasets = await api.datasets();
        datasetError = null;
      } catch {
        if (!datasetError) datasets = [...datasets.filter((d) => d.name !== dataset.name), dataset];
      }
      if (dataset.model && dataset.model !== model && FIELDS[dataset.model]) {
        model = dataset.model;
        const radio = form.querySelector(`input[name="model"][value="${model}"]`);
        if (radio) radio.checked = true;
      }
      values[model].dataset = dataset.name;
      drawFields();
      const kind = dataset.kind === "images" ? "images" : "text pairs";
      const sha = (dataset.sha256 || "").slice(0, 12);
      replace(status, h("div", { class: "alert success upload-result", role: "status", "data-dataset": dataset.name },
        h("strong", {}, created ? `Uploaded “${dataset.name}”` : `“${dataset.name}” was already uploaded with these files`),
        h("span", { class: "upload-facts" },
          h("span", { "data-fact": "kind" }, kind),
          h("span", { "data-fact": "counts" }, countsText(dataset.counts)),
          sha ? h("span", { "data-fact": "sha256", title: `sha256 ${dataset.sha256}` }, "sha256 ", h("code", {}, sha)) : null,
          Number.isFinite(dataset.size_bytes) ? h("span", { "data-fact": "size" }, bytesText(dataset.size_bytes)) : null),
        h("span", {}, `Selected for a ${model} training below.`)));
      if (!section.isConnected) banner(`Dataset “${dataset.name}” uploaded.`, "success");
    }

    const section = h("details", { class: "upload-dataset", id: "dataset-upload" },
      h("summary", {}, h("span", { class: "upload-title" }, "Upload a dataset"),
        h("span", { class: "hint" }, "your own sentence pairs or IDX images, then train on them")),
      h("div", { class: "upload-body" },
        h("div", { class: "upload-fields" },
          h("div", { class: "field" }, h("label", { for: "upload-name" }, "Dataset name"), nameInput,
            h("p", { class: "hint", id: "upload-name-hint" }, "letters, digits, . _ - (what a training's dataset is called)")),
          h("div", { class: "field" }, h("label", { for: "upload-files" }, "Files"), fileInput,
            h("p", { class: "hint", id: "upload-files-hint" },
              "sentence pairs: train-*.txt + val-*.txt (test-*.txt optional), lines “english<Tab>spanish”; or IDX "
              + "*-images-idx3-ubyte + *-labels-idx1-ubyte (.gz ok; choose “All files” in the picker for "
              + "files without an extension); or one .zip / .tar.gz of them"),
            chosen)),
        h("div", { class: "form-actions" }, button, cancel, progress),
        status));
    return section;
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
      h("div", { class: "fields" }, h("div", { class: "dataset-row" }, datasetField(), upload),
        main.map((f) => field(...f)), sweepField()),
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
