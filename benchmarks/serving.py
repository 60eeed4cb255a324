"""Serving under load, in one run: a real `python -m api` on loopback, wrk as the load (benchmarks/wrk.py).

    .venv/bin/python benchmarks/serving.py                       # everything, 10 s per load, median of 3
    .venv/bin/python benchmarks/serving.py --litserve-python .venv-litserve/bin/python   # + the LitServe peer

It trains a CNN (1 epoch, 2,000 digits) and a seq2seq model (3 epochs, with attention) into a fresh SQLite
database, then, with the dynamic batcher on and off (INKWELL_BATCHING), after a warm-up:
- `POST /predict`, JSON 28x28 pixels and a multipart PNG upload, at each --connections count;
- `GET /healthz` at 32 connections (the server's own ceiling);
- `POST /transliterate`, one Spanish sentence per request (32 different ones in turn), greedy and beam 5,
  at 1 and 32 connections;
- with batching on, overload: 256 connections against a queue bound of 64 (INKWELL_BATCH_QUEUE) on /predict
  and on /transliterate beam 5: status counts, 503s carrying Retry-After, the p99 of the accepted requests
  as the server measured it (its request histogram), and whether the server answers normally afterwards;
- the LitServe app of benchmarks/litserve_app.py on the same CNN checkpoint (own virtualenv), /predict JSON.
Each load runs --repeats times; the run with the median req/s is reported, with every repeat's req/s.
Prints one JSON object.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import wrk  # noqa: E402
from benchmarks.common import base_parser, machine_info  # noqa: E402

SENTENCES = 32


def train_models(root: Path, data_dir: Path) -> dict[str, str]:
    """A succeeded CNN run and a succeeded seq2seq run in a fresh SQLite database under `root`."""
    from sqlalchemy.orm import sessionmaker

    from core import results, runs
    from core.db import make_engine
    from core.migrate import upgrade_head
    from core.storage import ArtifactStore, checkpoint_key
    from ml.config import TrainConfig
    from ml.training import fit

    url = f"sqlite:///{root / 'inkwell.db'}"
    upgrade_head(url)
    store = ArtifactStore(root / "artifacts", root / "cache")  # the local store: keys are paths under it
    made = {}
    specs = {
        "cnn": (TrainConfig.for_model("cnn", "mnist-8k", epochs=1, limit=2000, batch_size=32),
                "mnist-8k", f"idx:{data_dir / 'mnist-8k'}"),
        "seq2seq": (TrainConfig.for_model("seq2seq", "spa-eng", epochs=3, attention=True),
                    "spa-eng", f"pairs:{data_dir / 'spa-eng'}"),
    }
    with sessionmaker(make_engine(url), expire_on_commit=False)() as session:
        for model, (config, name, spec) in specs.items():
            (run,) = runs.create_runs(session, [config.to_dict()], model, name)
            runs.claim_run(session, run.id, "bench", "cpu", 3600)
            out_dir = store.local_path(checkpoint_key(run.id)).parent  # where the API reads the checkpoint
            fitted = fit(config, data_dir=data_dir, out_dir=out_dir, dataset_spec=spec)
            for h in fitted.history:
                results.record_epoch(session, run.id, h.epoch, h.train_loss, h.val_metric, h.seconds)
            runs.finish_run(session, run.id, "succeeded", worker="bench")
            made[model] = run.id
    return made


def write_bodies(root: Path, data_dir: Path) -> dict[str, list[Path]]:
    """Request bodies: JSON pixels and multipart PNG uploads of test digits, and /transliterate JSON."""
    import torch

    from ml.data.images import load_images
    from ml.data.text import read_pairs_file
    from ml.imageprep import tensor_to_png

    digits = load_images(f"idx:{data_dir / 'mnist-8k'}", data_dir).test.images[:16]  # (16, 1, 28, 28)
    bodies: dict[str, list[Path]] = {"json": [], "png": [], "greedy": [], "beam": []}
    for i, digit in enumerate(digits):
        levels = (digit[0] * 256).round().clamp(0, 255).to(torch.int64).tolist()
        bodies["json"].append(root / f"digit{i}.json")
        bodies["json"][-1].write_text(json.dumps({"pixels": levels}))
        png = tensor_to_png(digit)
        form = (b"--inkwellbench\r\nContent-Disposition: form-data; name=\"file\"; filename=\"d.png\"\r\n"
                b"Content-Type: image/png\r\n\r\n" + png + b"\r\n--inkwellbench--\r\n")
        bodies["png"].append(root / f"digit{i}.form")
        bodies["png"][-1].write_bytes(form)
    pairs = read_pairs_file(data_dir / "spa-eng" / "val-eng-spa.txt")[:SENTENCES]
    for i, (spanish, _) in enumerate(pairs):
        for decoding, extra in (("greedy", {}), ("beam", {"beam_size": 5})):
            path = root / f"{decoding}{i}.json"
            path.write_text(json.dumps({"text": spanish, "decoding": decoding, **extra}))
            bodies[decoding].append(path)
    return bodies


def wait_up(base: str, path: str = "/healthz", seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(base + path, timeout=1)
            return
        except (OSError, urllib.error.URLError):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{base} did not come up") from None
            time.sleep(0.2)


def median_of(repeats: int, url: str, connections: int, seconds: float, script: Path | None = None) -> dict:
    """Run the load `repeats` times; the run with the median req/s, with every run's req/s."""
    runs = sorted((wrk.run(url, connections, seconds, script) for _ in range(repeats)), key=lambda r: r["req_per_s"])
    chosen = dict(runs[len(runs) // 2])
    chosen["req_per_s_runs"] = [r["req_per_s"] for r in runs]
    return chosen


def post(base: str, path: str, body: Path, content_type: str) -> tuple[int, dict]:
    request = urllib.request.Request(base + path, data=body.read_bytes(), headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def accepted_latency(base: str, route: str) -> dict[str, int]:
    """Cumulative counts of the server's request histogram for `route` answered 200: {le: count}."""
    text = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
    found = {}
    for line in text.splitlines():
        if (line.startswith("inkwell_http_request_duration_seconds_bucket{") and f'route="{route}"' in line
                and 'status="200"' in line and 'method="POST"' in line):
            le = line.split('le="')[1].split('"')[0]
            found[le] = int(float(line.rsplit(" ", 1)[1]))
    return found


def p99_bound(before: dict[str, int], after: dict[str, int]) -> str | None:
    """The histogram bucket (upper bound, seconds) holding the 99th percentile of the requests between."""
    delta = {le: after.get(le, 0) - before.get(le, 0) for le in after}
    total = delta.get("+Inf", 0)
    if not total:
        return None
    for le, count in sorted(delta.items(), key=lambda kv: float(kv[0])):
        if count >= 0.99 * total:
            return le
    return "+Inf"


class Server:
    """A process serving on `port`, stopped on exit."""

    def __init__(self, cmd: list[str], env: dict[str, str], port: int, log: Path) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.log = log.open("wb")
        self.process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def inkwell(root: Path, data_dir: Path, port: int, **settings: str) -> Server:
    env = {**os.environ, "INKWELL_DATABASE_URL": f"sqlite:///{root / 'inkwell.db'}",
           "INKWELL_BROKER_URL": f"sqla+sqlite:///{root / 'broker.db'}",
           "INKWELL_ARTIFACTS_DIR": str(root / "artifacts"), "INKWELL_DATA_DIR": str(data_dir), "PORT": str(port),
           **{f"INKWELL_{k.upper()}": v for k, v in settings.items()}}
    return Server([sys.executable, "-m", "api"], env, port, root / f"api-{port}.log")


def measure_inkwell(server: Server, scripts: dict[str, Path], connections: list[int], seconds: float,
                    repeats: int, run_ids: dict[str, str], bodies: dict[str, list[Path]]) -> dict:
    base = server.base
    wait_up(base)
    status, answer = post(base, "/predict", bodies["json"][0], "application/json")
    assert status == 200 and answer["run_id"] == run_ids["cnn"], (status, answer)
    status, answer = post(base, "/transliterate", bodies["beam"][0], "application/json")
    assert status == 200 and answer["run_id"] == run_ids["seq2seq"], (status, answer)
    for name in ("json", "png", "greedy", "beam"):  # warm-up: models loaded, batchers started
        path = "/predict" if name in ("json", "png") else "/transliterate"
        wrk.run(base + path, 8, 2, scripts[name])
    out: dict = {}
    for name in ("json", "png"):
        for c in connections:
            out[f"predict_{name}_c{c}"] = median_of(repeats, base + "/predict", c, seconds, scripts[name])
    out["healthz_c32"] = median_of(repeats, base + "/healthz", 32, seconds)
    for name in ("greedy", "beam"):
        for c in (1, 32):
            out[f"transliterate_{name}_c{c}"] = median_of(repeats, base + "/transliterate", c, seconds, scripts[name])
    return out


def overload(server: Server, scripts: dict[str, Path], seconds: float) -> dict:
    base = server.base
    wait_up(base)
    out = {}
    for name, path in (("predict_json", "/predict"), ("transliterate_beam", "/transliterate")):
        wrk.run(base + path, 8, 2, scripts[name.split("_")[1]])  # warm-up
        before = accepted_latency(base, path)
        result = wrk.run(base + path, 256, seconds, scripts[f"{name.split('_')[1]}_counting"])
        result["accepted_p99_at_most_s"] = p99_bound(before, accepted_latency(base, path))
        started = time.monotonic()  # afterwards: alive at once, and answering normally once the backlog drained
        healthy = urllib.request.urlopen(base + "/healthz", timeout=5).status == 200
        status = 0
        while status != 200 and time.monotonic() - started < 60:
            status, _ = post(base, path, scripts[f"{name.split('_')[1]}_body"], "application/json")
            if status != 200:
                time.sleep(0.1)
        result["after"] = {"healthz": healthy, "request_status": status,
                           "seconds_to_first_200": round(time.monotonic() - started, 3)}
        out[f"{name}_c256"] = result
    stats = json.load(urllib.request.urlopen(base + "/serving/stats", timeout=5))
    out["serving_stats"] = {e["endpoint"]: {k: e[k] for k in ("batches", "items", "rejected", "mean_batch_size")}
                            for e in stats["endpoints"]}
    return out


def measure_litserve(python: str, checkpoint: Path, port: int, root: Path, scripts: dict[str, Path],
                     connections: list[int], seconds: float, repeats: int) -> dict:
    cmd = [python, str(ROOT / "benchmarks" / "litserve_app.py"), "--checkpoint", str(checkpoint), "--port", str(port)]
    with Server(cmd, {**os.environ}, port, root / "litserve.log") as server:
        deadline = time.monotonic() + 120
        while True:  # LitServe has no /healthz of ours: wait for /predict to answer
            try:
                status, _ = post(server.base, "/predict", scripts["json_body"], "application/json")
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or server.process.poll() is not None:
                raise RuntimeError(f"LitServe did not come up; see {root / 'litserve.log'}")
            time.sleep(0.5)
        wrk.run(server.base + "/predict", 8, 2, scripts["json"])
        return {f"predict_json_c{c}": median_of(repeats, server.base + "/predict", c, seconds, scripts["json"])
                for c in connections}


def main() -> None:
    p = base_parser(__doc__, repeats=3)
    p.add_argument("--connections", type=int, nargs="+", default=[1, 8, 32, 64])
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--litserve-python", help="the LitServe virtualenv's python (benchmarks/litserve_env.sh)")
    p.add_argument("--skip-unbatched", action="store_true", help="only the default configuration (batching on)")
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="inkwell-serving-"))
    run_ids = train_models(root, args.data_dir)
    bodies = write_bodies(root, args.data_dir)
    scripts = {
        "json": wrk.post_script(root / "json.lua", bodies["json"], "application/json"),
        "png": wrk.post_script(root / "png.lua", bodies["png"], "multipart/form-data; boundary=inkwellbench"),
        "greedy": wrk.post_script(root / "greedy.lua", bodies["greedy"], "application/json"),
        "beam": wrk.post_script(root / "beam.lua", bodies["beam"], "application/json"),
        "json_counting": wrk.post_script(root / "json-c.lua", bodies["json"], "application/json", counting=True),
        "beam_counting": wrk.post_script(root / "beam-c.lua", bodies["beam"], "application/json", counting=True),
        "json_body": bodies["json"][0], "beam_body": bodies["beam"][0],
    }
    report: dict = {"machine": machine_info(), "run_ids": run_ids, "seconds": args.seconds,
                    "repeats": args.repeats, "results": {}}
    for batching in ("true",) if args.skip_unbatched else ("true", "false"):
        with inkwell(root, args.data_dir, 18010 if batching == "true" else 18011, batching=batching) as server:
            report["results"][f"inkwell batching={batching}"] = measure_inkwell(
                server, scripts, args.connections, args.seconds, args.repeats, run_ids, bodies)
    with inkwell(root, args.data_dir, 18012, batching="true", batch_queue="64") as server:
        report["results"]["inkwell overload (batching, queue 64)"] = overload(server, scripts, args.seconds)
    if args.litserve_python:
        from core.storage import ArtifactStore, checkpoint_key
        checkpoint = ArtifactStore(root / "artifacts", root / "cache").local_path(checkpoint_key(run_ids["cnn"]))
        report["results"]["litserve"] = measure_litserve(args.litserve_python, checkpoint, 18013, root, scripts,
                                                         args.connections, args.seconds, args.repeats)
    report["load_after"] = os.getloadavg()
    report["median_note"] = f"each load run {args.repeats}x; the median run by req/s is shown"
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
