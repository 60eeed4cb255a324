// The single-page app: hash routes -> page modules, the navigation, and the API-key field.
// Every page module exports `render(root, params)` and may return a cleanup function (closing event
// streams and timers) that runs when the user navigates away.

import { api, getApiKey, openSession, setApiKey } from "./api.js";
import { banner, errorBox, h, replace } from "./dom.js";
import * as classify from "./pages/classify.js";
import * as compare from "./pages/compare.js";
import * as report from "./pages/report.js";
import * as run from "./pages/run.js";
import * as runs from "./pages/runs.js";
import * as serving from "./pages/serving.js";
import * as sweep from "./pages/sweep.js";
import * as sweeps from "./pages/sweeps.js";
import * as train from "./pages/train.js";
import * as transliterate from "./pages/transliterate.js";

const ROUTES = [
  { pattern: /^\/?$/, page: runs, nav: "runs", title: "Runs" },
  { pattern: /^\/runs\/?$/, page: runs, nav: "runs", title: "Runs" },
  { pattern: /^\/runs\/([0-9a-f]{32})$/, page: run, nav: "runs", title: "Run", keys: ["id"] },
  { pattern: /^\/sweeps\/?$/, page: sweeps, nav: "sweeps", title: "Sweeps" },
  { pattern: /^\/sweeps\/([0-9a-f]{32})$/, page: sweep, nav: "sweeps", title: "Sweep", keys: ["id"] },
  { pattern: /^\/compare\/?$/, page: compare, nav: "runs", title: "Compare runs" },
  { pattern: /^\/report\/?$/, page: report, nav: "report", title: "Report" },
  { pattern: /^\/train\/?$/, page: train, nav: "train", title: "New training" },
  { pattern: /^\/classify\/?$/, page: classify, nav: "classify", title: "Classify" },
  { pattern: /^\/transliterate\/?$/, page: transliterate, nav: "transliterate", title: "Transliterate" },
  { pattern: /^\/serving\/?$/, page: serving, nav: "serving", title: "Serving" },
];

let cleanup = null;

function match(path) {
  for (const route of ROUTES) {
    const m = route.pattern.exec(path);
    if (m) {
      const params = {};
      (route.keys || []).forEach((key, i) => { params[key] = m[i + 1]; });
      return { route, params };
    }
  }
  return null;
}

function currentPath() {
  const hash = window.location.hash.replace(/^#/, "");
  const [path, query = ""] = hash.split("?");
  return { path: path || "/", query: new URLSearchParams(query) };
}

async function show() {
  if (cleanup) {
    try { cleanup(); } catch (err) { console.warn("page cleanup failed", err); }
    cleanup = null;
  }
  const root = document.getElementById("main");
  const { path, query } = currentPath();
  const found = match(path);
  for (const link of document.querySelectorAll("[data-nav]")) {
    const active = found && link.dataset.nav === found.route.nav;
    link.classList.toggle("active", Boolean(active));
    if (active) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (!found) {
    document.title = "Not found · inkwell";
    replace(root, h("section", { class: "page" }, h("h1", {}, "Page not found"),
      h("p", {}, "There is no page at ", h("code", {}, `#${path}`), ". ", h("a", { href: "#/runs" }, "See the runs"), ".")));
    return;
  }
  document.title = `${found.route.title} · inkwell`;
  root.replaceChildren();
  root.dataset.page = found.route.nav;
  try {
    cleanup = (await found.route.page.render(root, { ...found.params, query })) || null;
  } catch (err) {
    replace(root, errorBox(err, "This page could not be shown:"));
  }
}

function setupApiKey(required) {
  const form = document.getElementById("api-key-form");
  const input = document.getElementById("api-key-input");
  input.value = getApiKey();
  const reveal = () => { form.hidden = false; };
  if (required || getApiKey()) reveal();
  window.addEventListener("inkwell:auth-required", () => {
    reveal();
    input.focus();
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    setApiKey(input.value.trim());
    await openSession(input.value.trim());
    banner(input.value.trim() ? "API key saved in this browser." : "API key removed.", "success");
  });
}

async function start() {
  let required = false;
  try {
    required = (await api.settings()).api_key_required;
  } catch {
    // the pages themselves will report that the API cannot be reached
  }
  setupApiKey(required);
  if (required && getApiKey()) await openSession(getApiKey());
  window.addEventListener("hashchange", show);
  await show();
}

start();
