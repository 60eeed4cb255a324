"""wrk (Debian's `wrk`, an HTTP load generator in C with Lua scripting) driven from Python.

`run(url, connections, seconds, script)` runs one load and parses req/s, latency percentiles and errors.
`post_script` makes the Lua script for a POST whose body is read from a file (any bytes: JSON, a multipart
upload) or cycled through several bodies; `counting` adds per-status counts and 503s with Retry-After
(wrk copies each thread's Lua tables back to `done`, which prints them as one JSON line).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

SCALE_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}

_POST = """wrk.method = "POST"
wrk.headers["Content-Type"] = "{content_type}"
local bodies = {{}}
for i, path in ipairs({{{paths}}}) do
  local f = assert(io.open(path, "rb"))
  bodies[i] = f:read("*a")
  f:close()
end
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, bodies[(n % #bodies) + 1])
end
"""

_COUNTING = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {} retry_after = 0 end
function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  if status == 503 and (headers["retry-after"] or headers["Retry-After"]) then retry_after = retry_after + 1 end
end
function done(summary, latency, requests)
  local total, retry = {}, 0
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses")) do total[k] = (total[k] or 0) + v end
    retry = retry + t:get("retry_after")
  end
  local parts = {}
  for k, v in pairs(total) do table.insert(parts, string.format('"%s": %d', k, v)) end
  io.write(string.format('COUNTS {"statuses": {%s}, "retry_after": %d}\\n', table.concat(parts, ", "), retry))
end
"""


def post_script(path: Path, bodies: list[Path], content_type: str, counting: bool = False) -> Path:
    """Write a Lua script POSTing `bodies` in turn (one per request) with this Content-Type."""
    paths = ", ".join(json.dumps(str(b)) for b in bodies)
    path.write_text(_POST.format(content_type=content_type, paths=paths) + (_COUNTING if counting else ""))
    return path


def counting_script(path: Path) -> Path:
    """A script for GETs that only counts statuses."""
    path.write_text(_COUNTING)
    return path


def run(url: str, connections: int, seconds: float, script: Path | None = None, timeout_s: int = 10) -> dict:
    """One wrk load: req/s, p50/p90/p99 (ms), responses not 2xx/3xx, socket errors (and status counts when
    the script counts them)."""
    cmd = ["wrk", "-t", str(min(connections, 2)), "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
           "--timeout", f"{timeout_s}s", "--latency"]
    if script is not None:
        cmd += ["-s", str(script)]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=seconds + 120).stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if found is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    result: dict[str, Any] = {"req_per_s": float(found.group(1))}
    for p in ("50", "90", "99"):
        m = re.search(rf"\s{p}\.000%\s+([\d.]+)(us|ms|s)\b", out) or re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)\b", out)
        if m:
            result[f"p{p}_ms"] = round(float(m.group(1)) * SCALE_MS[m.group(2)], 2)
    total = re.search(r"(\d+) requests in", out)
    result["requests"] = int(total.group(1)) if total else None
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non_2xx"] = int(errors.group(1)) if errors else 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result["socket_errors"] = sum(map(int, sock.groups())) if sock else 0
    counts = re.search(r"^COUNTS (.*)$", out, re.M)
    if counts:
        result.update(json.loads(counts.group(1)))
    return result
