// Following a run (GET /runs/{id}/events: `epoch`, `status`) or an evaluation (`progress`, `status`) live
// through their server-sent events.

import { links } from "./api.js";
import { isFinished } from "./format.js";

/**
 * Subscribe to a run's events. `onEpoch(data)` per finished epoch (the stream first replays the epochs
 * already done), `onStatus(data)` per status change. The stream is closed by us once the run has
 * finished (so the browser does not reconnect), or when the returned function is called.
 */
export function followRun(runId, { onEpoch, onStatus, onBroken } = {}) {
  const source = new EventSource(links.events(runId));
  let closed = false;
  const close = () => {
    if (!closed) {
      closed = true;
      source.close();
    }
  };
  source.addEventListener("epoch", (event) => {
    const data = parse(event);
    if (data && onEpoch) onEpoch(data);
  });
  source.addEventListener("status", (event) => {
    const data = parse(event);
    if (!data) return;
    if (onStatus) onStatus(data);
    if (isFinished(data.status)) close();
  });
  source.addEventListener("error", () => {
    // The browser reconnects by itself (readyState CONNECTING); tell the page only when it gave up.
    if (!closed && source.readyState === EventSource.CLOSED && onBroken) onBroken();
  });
  return close;
}

/**
 * Follow an evaluation (GET /evaluations/{id}/events): `onUpdate(data)` for every `progress` and `status`
 * event (an EvaluationOut without its details); closed once it has finished or when the returned function
 * is called.
 */
export function followEvaluation(evaluationId, { onUpdate, onBroken } = {}) {
  const source = new EventSource(links.evaluationEvents(evaluationId));
  let closed = false;
  const close = () => {
    if (!closed) {
      closed = true;
      source.close();
    }
  };
  const handle = (event) => {
    const data = parse(event);
    if (!data) return;
    if (onUpdate) onUpdate(data);
    if (isFinished(data.status)) close();
  };
  source.addEventListener("progress", handle);
  source.addEventListener("status", handle);
  source.addEventListener("error", () => {
    if (!closed && source.readyState === EventSource.CLOSED && onBroken) onBroken();
  });
  return close;
}

function parse(event) {
  try {
    return JSON.parse(event.data);
  } catch {
    return null;
  }
}
