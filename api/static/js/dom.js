// Tiny DOM helpers: build elements without innerHTML (so no text from the API is ever parsed as HTML).

/**
 * h("div", {class: "card", onclick: fn}, "text", child, [more, children]) -> HTMLElement.
 * Attributes starting with "on" become listeners; `dataset` and `style` objects are merged;
 * null/false/undefined attributes and children are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key === "style" && typeof value === "object") {
      Object.assign(el.style, value);
    } else if (key === "class") {
      el.className = value;
    } else if (key in el && typeof value !== "string") {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Replace everything inside `el` with `children`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A readable error box (role=alert) for an ApiError or any Error. */
export function errorBox(err, prefix = "") {
  const message = err && err.message ? err.message : String(err);
  return h("div", { class: "alert error", role: "alert" }, prefix ? h("strong", {}, prefix + " ") : null, message);
}

export function notice(text, kind = "info") {
  return h("div", { class: `alert ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
}

let uid = 0;
/** A unique id for label/input pairs. */
export function nextId(prefix = "f") {
  uid += 1;
  return `${prefix}-${uid}`;
}

let bannerTimer = null;
/** A short message at the top of the page, hidden again after a few seconds. */
export function banner(text, kind = "info") {
  const el = document.getElementById("banner");
  if (!el) return;
  el.className = `banner ${kind}`;
  el.textContent = text;
  el.hidden = false;
  clearTimeout(bannerTimer);
  bannerTimer = setTimeout(() => { el.hidden = true; }, 5000);
}
