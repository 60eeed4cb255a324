// Following a run live through its server-sent events (`epoch` and `status`, see GET /runs/{id}/events).

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

function parse(event) {
  try {
    return JSON.parse(event.data);
  } catch {
    return null;
  }
}
