// Sweeps: the learning-rate sweeps found among the runs, newest first.

import { api } from "../api.js";
import { errorBox, h, replace } from "../dom.js";
import { ago, isFinished, learningRate, shortId } from "../format.js";

export async function render(root) {
  const list = h("div", { class: "card table-wrap" });
  replace(root, h("section", { class: "page" },
    h("div", { class: "page-head" },
      h("div", {}, h("h1", {}, "Sweeps"),
        h("p", { class: "muted" }, "Learning-rate sweeps: one run per rate, trained side by side.")),
      h("a", { class: "btn primary", href: "#/train?sweep=1" }, "New sweep")),
    list));
  try {
    const runs = await api.runs({ limit: 1000 });
    const sweeps = new Map();
    for (const run of runs) {
      if (!run.sweep_id) continue;
      if (!sweeps.has(run.sweep_id)) sweeps.set(run.sweep_id, []);
      sweeps.get(run.sweep_id).push(run);
    }
    if (!sweeps.size) {
      replace(list, h("div", { class: "empty" }, h("p", {}, "No sweeps yet."),
        h("a", { class: "btn", href: "#/train?sweep=1" }, "Start a learning-rate sweep")));
      return null;
    }
    replace(list, h("table", {},
      h("thead", {}, h("tr", {}, ["Sweep", "Model · data", "Learning rates", "Runs", "Created"]
        .map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, [...sweeps.entries()].map(([id, members]) => {
        const done = members.filter((r) => isFinished(r.status)).length;
        const rates = members.map((r) => learningRate(r.config.learning_rate)).reverse().join(", ");
        return h("tr", { dataset: { sweepId: id } },
          h("td", {}, h("a", { class: "mono strong", href: `#/sweeps/${id}` }, shortId(id))),
          h("td", {}, h("span", { class: `model-tag ${members[0].model}` }, members[0].model), " ", members[0].dataset),
          h("td", { class: "mono" }, rates),
          h("td", {}, `${done} of ${members.length} finished`),
          h("td", { class: "muted" }, ago(members[members.length - 1].created_at)));
      }))));
  } catch (err) {
    replace(list, errorBox(err, "Could not load the sweeps:"));
  }
  return null;
}
