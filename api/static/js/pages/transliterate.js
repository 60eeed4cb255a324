// Transliterate: Spanish -> English with a seq2seq model; greedy and beam search side by side,
// the n-best list with scores and the attention heatmap (output × input characters).

import { api } from "../api.js";
import { errorBox, h, notice, replace } from "../dom.js";
import { attentionHeatmap, purge } from "../charts.js";
import { num, pct, shortId } from "../format.js";

const MODES = [["both", "Greedy and beam"], ["greedy", "Greedy"], ["beam", "Beam"]];

export async function render(root) {
  let mode = "both";
  const text = h("input", { type: "text", id: "translit-text", value: "tengo hambre.", maxlength: "200",
    autocomplete: "off", spellcheck: "false", "aria-describedby": "translit-text-hint" });
  const runSelect = h("select", { id: "translit-run" });
  const num_ = (id, value, label, hint) => [h("label", { for: id }, label),
    h("input", { type: "text", inputmode: "decimal", id, value, autocomplete: "off" }),
    hint ? h("p", { class: "hint" }, hint) : null];
  const beamFields = h("div", { class: "fields compact" },
    h("div", { class: "field" }, num_("translit-beam", "5", "Beam size")),
    h("div", { class: "field" }, num_("translit-nbest", "3", "n-best", "hypotheses listed (≤ beam size)")),
    h("div", { class: "field" }, num_("translit-alpha", "0", "Length penalty", "score = log p / length^penalty")));
  const runNote = h("div");
  const formError = h("div", { id: "translit-error", "aria-live": "assertive" });
  const results = h("div", { class: "grid two", id: "translit-results" });
  const submit = h("button", { type: "submit", class: "btn primary", id: "translit-submit" }, "Translate");

  const form = h("form", { class: "card form", novalidate: true, onsubmit: (e) => { e.preventDefault(); go(); } },
    h("div", { class: "field wide" }, h("label", { for: "translit-text" }, "Spanish text"), text,
      h("p", { class: "hint", id: "translit-text-hint" }, "up to 200 characters; normalised like the training data")),
    h("div", { class: "row spread" },
      h("div", { class: "field grow" }, h("label", { for: "translit-run" }, "Model"), runSelect),
      h("fieldset", { class: "segmented" }, h("legend", {}, "Decoding"),
        MODES.map(([value, label]) => h("label", { class: "segment" },
          h("input", { type: "radio", name: "decoding", value, checked: value === mode,
            onchange: () => { mode = value; beamFields.hidden = mode === "greedy"; } }),
          h("span", {}, label))))),
    beamFields, runNote, formError,
    h("div", { class: "form-actions" }, submit));

  replace(root, h("section", { class: "page" },
    h("div", { class: "page-head" }, h("div", {}, h("h1", {}, "Transliterate"),
      h("p", { class: "muted" }, "Spanish → English, character by character, with the attention the decoder paid."))),
    form, results));

  try {
    const [runs, models] = await Promise.all([api.runs({ status: "succeeded", model: "seq2seq", limit: 200 }),
      api.models()]);
    const info = models.find((m) => m.model === "seq2seq");
    const servingId = info ? info.serving_run_id : null;
    replace(runSelect, runs.map((r) => h("option", { value: r.id, selected: r.id === servingId },
      `${shortId(r.id)} · ${r.config.attention ? "attention" : "no attention"} · err ${pct(r.best_val_metric)}`
      + (r.id === servingId ? ` (serving, ${info.serving_source})` : ""))));
    if (!runs.length) {
      replace(runNote, notice("No trained seq2seq model yet: start one on the New training page.", "warning"));
    }
  } catch (err) {
    replace(runNote, errorBox(err, "Could not list the models:"));
  }

  const asNumber = (id) => {
    const t = form.querySelector(`#${id}`).value.trim();
    return t === "" || !Number.isFinite(Number(t)) ? t : Number(t);
  };

  let asked = 0;
  async function go() {
    const ticket = ++asked;
    replace(formError);
    submit.disabled = true;
    const base = { text: text.value, run_id: runSelect.value || null, return_attention: true };
    const beam = { ...base, decoding: "beam", beam_size: asNumber("translit-beam"), n_best: asNumber("translit-nbest"),
      length_penalty: asNumber("translit-alpha") };
    const greedy = { ...base, decoding: "greedy" };
    const wanted = mode === "both" ? [greedy, beam] : [mode === "greedy" ? greedy : beam];
    try {
      const answers = await Promise.all(wanted.map((body) => api.transliterate(body)));
      if (ticket !== asked) return;
      for (const el of results.querySelectorAll(".chart")) purge(el);
      replace(results, answers.map(panel));
    } catch (err) {
      if (ticket === asked) replace(formError, errorBox(err));
    } finally {
      submit.disabled = false;
    }
  }

  return () => {
    asked += 1;
    for (const el of results.querySelectorAll(".chart")) purge(el);
  };
}

/** Text as shown: blanks made visible (an untrained model may answer only spaces). */
function visible(text) {
  if (!text) return "(empty)";
  return text.trim() ? text : "␣".repeat(Math.min(text.length, 40));
}

/** One decoding's answer: the n-best list (click to select) and the attention heatmap. */
function panel(answer) {
  const chart = h("div", { class: "chart heatmap", "data-decoding": answer.decoding });
  const note = h("p", { class: "muted small attention-note" });
  let selected = 0;
  const list = h("ol", { class: "hypotheses" });
  const drawList = () => replace(list, answer.hypotheses.map((hyp, i) => h("li", {},
    h("button", {
      type: "button", class: `hypothesis${i === selected ? " selected" : ""}`, "aria-pressed": String(i === selected),
      dataset: { text: hyp.text, score: String(hyp.score) }, onclick: () => { selected = i; drawList(); drawNote(); },
    },
    h("span", { class: "hyp-text" }, visible(hyp.text)),
    h("span", { class: "hyp-score mono", title: `log probability ${hyp.log_prob.toFixed(4)}` }, num(hyp.score))))));
  const drawNote = () => {
    if (!answer.attention) {
      note.textContent = "This model was trained without attention, so there is no heatmap.";
    } else if (selected !== 0) {
      note.textContent = "The API returns attention for the best hypothesis only: the heatmap shows hypothesis 1.";
    } else {
      note.textContent = "Attention of the best hypothesis: each row is an output character, each column an input "
        + "character.";
    }
  };
  drawList();
  drawNote();
  const card = h("div", { class: "card result", "data-decoding": answer.decoding },
    h("h2", {}, answer.decoding === "beam" ? "Beam search" : "Greedy"),
    h("p", { class: "translation", "data-output": "" }, visible(answer.output)),
    h("p", { class: "muted small" }, `run ${shortId(answer.run_id)} · input “${answer.input}”`),
    list, note, answer.attention ? chart : null);
  if (answer.attention) {
    // Plotly needs the element in the page to measure it: draw once it is attached.
    requestAnimationFrame(() => attentionHeatmap(chart, answer.attention, answer.input_chars, answer.output_chars));
  }
  return card;
}
