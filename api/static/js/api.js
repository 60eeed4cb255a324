// The inkwell HTTP API as small async functions. Every failure becomes an ApiError whose `message`
// is readable on the page: the API's `detail`, a note about a missing API key, or a network error.

const KEY_STORAGE = "inkwell.apiKey";

export class ApiError extends Error {
  /**
   * @param {number} status HTTP status (0 when the server could not be reached)
   * @param {string} message readable text (the API's `detail`)
   * @param {{field: string, message: string}[]} errors per-field messages of a 422, if any
   */
  constructor(status, message, errors = []) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.errors = errors;
  }
}

export function getApiKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

export function setApiKey(key) {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    // storage disabled: the key lives only as long as the page
  }
}

function detailText(detail) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((d) => (d && d.msg ? `${(d.loc || []).slice(1).join(".")}: ${d.msg}` : String(d))).join("; ");
  }
  return detail == null ? "" : JSON.stringify(detail);
}

async function failure(response) {
  let detail = "";
  let errors = [];
  const type = response.headers.get("content-type") || "";
  try {
    if (type.includes("json")) {
      const body = await response.json();
      detail = detailText(body.detail);
      errors = Array.isArray(body.errors) ? body.errors : [];
    } else {
      detail = (await response.text()).slice(0, 300);
    }
  } catch {
    detail = "";
  }
  if (response.status === 401) {
    window.dispatchEvent(new CustomEvent("inkwell:auth-required"));
    const hint = getApiKey() ? "the saved API key was refused" : "this server needs an API key";
    return new ApiError(401, `${hint}: enter it in the "API key" field at the top of the page and try again.`);
  }
  const text = detail || `${response.status} ${response.statusText || "error"}`;
  return new ApiError(response.status, text, errors);
}

/**
 * One request. `json` sends a JSON body, `form` a FormData; `as` picks how the answer is read
 * ("json", "blob" or "none").
 */
export async function request(method, path, { json, form, query, as = "json", signal } = {}) {
  const url = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, String(v));
  }
  const headers = { Accept: as === "blob" ? "*/*" : "application/json" };
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = form;
  }
  const key = getApiKey();
  if (key) headers["X-API-Key"] = key;
  let response;
  try {
    response = await fetch(url, { method, headers, body, signal });
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new ApiError(0, "Network error: the inkwell API could not be reached. Is the server running?");
  }
  if (!response.ok) throw await failure(response);
  if (as === "blob") return response.blob();
  if (as === "none" || response.status === 204) return null;
  return response.json();
}

/**
 * POST /datasets as multipart (a `name` field and one `file` part per file) with XMLHttpRequest, so the
 * upload's progress can be shown: `onProgress(sent, total)` while the body goes out (total 0 when unknown),
 * `onSent()` once all of it has gone (the server then checks the files). Resolves with
 * `{dataset, created}` (created: false when the same name and content existed: 200 instead of 201);
 * rejects with an ApiError like `request` does, or an AbortError when `signal` aborts it.
 */
export function uploadDataset(name, files, { onProgress, onSent, signal } = {}) {
  const form = new FormData();
  form.append("name", name);
  for (const file of files) form.append("file", file, file.name);
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", new URL("/datasets", window.location.origin));
    xhr.setRequestHeader("Accept", "application/json");
    const key = getApiKey();
    if (key) xhr.setRequestHeader("X-API-Key", key);
    xhr.responseType = "text";
    xhr.upload.addEventListener("progress", (e) => {
      if (onProgress) onProgress(e.loaded, e.lengthComputable ? e.total : 0);
    });
    xhr.upload.addEventListener("load", () => { if (onSent) onSent(); });
    const abort = () => xhr.abort();
    const done = () => { if (signal) signal.removeEventListener("abort", abort); };
    xhr.addEventListener("load", async () => {
      done();
      if (xhr.status >= 200 && xhr.status < 300) {
        try {
          resolve({ dataset: JSON.parse(xhr.responseText), created: xhr.status === 201 });
        } catch {
          reject(new ApiError(xhr.status, "The API answered the upload with something that is not JSON."));
        }
        return;
      }
      // the same reading of the error as `request`: the API's `detail`, the API-key note on a 401, ...
      const headers = { "Content-Type": xhr.getResponseHeader("content-type") || "" };
      try {
        reject(await failure(new Response(xhr.responseText, { status: xhr.status, statusText: xhr.statusText, headers })));
      } catch {
        reject(new ApiError(xhr.status, `${xhr.status} ${xhr.statusText || "error"}`));
      }
    });
    xhr.addEventListener("error", () => {
      done();
      reject(new ApiError(0, "Network error: the upload did not reach the inkwell API (is the server running?)."));
    });
    xhr.addEventListener("abort", () => {
      done();
      reject(new DOMException("The upload was cancelled.", "AbortError"));
    });
    if (signal) {
      if (signal.aborted) {
        reject(new DOMException("The upload was cancelled.", "AbortError"));
        return;
      }
      signal.addEventListener("abort", abort);
    }
    xhr.send(form);
  });
}

const get = (path, query, opts) => request("GET", path, { query, ...opts });
const post = (path, json, opts) => request("POST", path, { json, ...opts });

/**
 * Give the key to the server as an HttpOnly cookie too, so images, downloads and event streams (which
 * cannot send headers) are authorised; an empty key removes the cookie.
 */
export async function openSession(key) {
  const url = new URL("/dashboard/session", window.location.origin);
  try {
    if (key) {
      await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ api_key: key }), credentials: "same-origin" });
    } else {
      await fetch(new URL("/dashboard/logout", window.location.origin), { method: "POST", credentials: "same-origin" });
    }
  } catch {
    // the next request reports an unreachable server
  }
}

export const api = {
  settings: () => get("/dashboard/settings"),
  runs: (query) => get("/runs", query).then((r) => r.runs),
  run: (id) => get(`/runs/${encodeURIComponent(id)}`),
  metrics: (id) => get(`/runs/${encodeURIComponent(id)}/metrics`),
  cancel: (id) => post(`/runs/${encodeURIComponent(id)}/cancel`),
  promote: (model, runId) => post(`/models/${encodeURIComponent(model)}/promote`, { run_id: runId }),
  models: () => get("/models").then((r) => r.models),
  sweep: (id) => get(`/sweeps/${encodeURIComponent(id)}`),
  datasets: () => get("/datasets").then((r) => r.datasets),
  train: (body) => post("/train", body),
  /** image: a Blob (PNG, JPEG, ...). */
  predict: (image, runId, topK = 5) => {
    const form = new FormData();
    form.append("file", image, "input.png");
    return request("POST", "/predict", { form, query: { run_id: runId, top_k: topK, include_input: true } });
  },
  activationMaps: (image, layer, runId) => {
    const form = new FormData();
    form.append("file", image, "input.png");
    return request("POST", "/activation-maps", { form, query: { run_id: runId, layer, format: "json" } });
  },
  transliterate: (body) => post("/transliterate", body),
  /** A run's evaluations, newest first (`details`: with each one's examples). */
  evaluations: (runId, details = false) =>
    get(`/runs/${encodeURIComponent(runId)}/evaluations`, { details: details || undefined }).then((r) => r.evaluations),
  /** body: {split, checkpoint, dataset?, decoding?, beam_size?, length_penalty?, limit?}. */
  evaluate: (runId, body) => post(`/runs/${encodeURIComponent(runId)}/evaluations`, body),
  evaluation: (id) => get(`/evaluations/${encodeURIComponent(id)}`),
  cancelEvaluation: (id) => post(`/evaluations/${encodeURIComponent(id)}/cancel`),
  compare: (ids) => get("/compare", { runs: ids.join(",") }),
  /** query: {limit?}: read the runs and evaluations made with that limit. */
  report: (query) => get("/report", query),
  /** body: {image_dataset, text_dataset, epochs?, limit?, beam_sizes?}. */
  reproduce: (body) => post("/report/reproduce", body),
};

export const links = {
  lossPng: (id) => `/runs/${encodeURIComponent(id)}/plots/loss.png`,
  validationPng: (id) => `/runs/${encodeURIComponent(id)}/plots/validation.png`,
  /** which: undefined (the final epoch's, the route's default), "best" or "last". */
  checkpoint: (id, which) => `/runs/${encodeURIComponent(id)}/checkpoint${which ? `?which=${which}` : ""}`,
  sweepPng: (id) => `/sweeps/${encodeURIComponent(id)}/plot.png`,
  events: (id) => `/runs/${encodeURIComponent(id)}/events`,
  evaluationEvents: (id) => `/evaluations/${encodeURIComponent(id)}/events`,
  compareCsv: (ids) => `/compare/metrics.csv?runs=${ids.map(encodeURIComponent).join(",")}`,
  compareJson: (ids) => `/compare/metrics.json?runs=${ids.map(encodeURIComponent).join(",")}`,
  reportPdf: "/report.pdf",
};
