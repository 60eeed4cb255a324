"""Serving under load: `POST /predict` (JSON 28x28 pixels) on a real `python -m api`, with and without the
dynamic batcher, and `GET /healthz` as the server's own ceiling. Loopback only; wrk (Debian) is the load.

    .venv/bin/python benchmarks/serving.py --connections 1 32 --seconds 10

Prints one JSON object: per configuration and connection count, req/s, latency percentiles and errors.
A first step towards the issue's full benchmark (PNG uploads, /transliterate, LitServe, overload).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import base_parser, machine_info  # noqa: E402

LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[%s]==]
"""


def _train(root: Path, data_dir: Path) -> str:
    """A succeeded CNN run (1 epoch on 2,000 digits) in a fresh SQLite database under `root`."""
    from sqlalchemy.orm import sessionmaker

    from core import results, runs
    from core.db import make_engine
    from core.migrate import upgrade_head
    from core.storage import ArtifactStore
    from ml.config import TrainConfig
    from ml.training import fit

    url = f"sqlite:///{root / 'inkwell.db'}"
    upgrade_head(url)
    config = TrainConfig.for_model("cnn", "mnist-8k", epochs=1, limit=2000, batch_size=32)
    with sessionmaker(make_engine(url), expire_on_commit=False)() as session:
        (run,) = runs.create_runs(session, [config.to_dict()], "cnn", "mnist-8k")
        runs.claim_run(session, run.id, "bench", "cpu", 3600)
        store = ArtifactStore(root / "artifacts")
        fitted = fit(config, data_dir=data_dir, out_dir=store.run_dir(run.id, create=True),
                     dataset_spec=f"idx:{data_dir / 'mnist-8k'}")
        for h in fitted.history:  # the best validation metric is what makes it the serving run
            results.record_epoch(session, run.id, h.epoch, h.train_loss, h.val_metric, h.seconds)
        runs.finish_run(session, run.id, "succeeded", worker="bench")
    return run.id


def _wrk(url: str, connections: int, seconds: int, script: Path | None) -> dict:
    cmd = ["wrk", "-t", str(min(connections, 2)), "-c", str(connections), "-d", f"{seconds}s", "--latency", url]
    if script is not None:
        cmd[1:1] = ["-s", str(script)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {p: re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out) for p in ("50", "99")}
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"req_per_s": rps, **{f"p{p}_ms": float(m.group(1)) * scale[m.group(2)] for p, m in lat.items() if m},
            "non_2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": sum(map(int, sock.groups())) if sock else 0}


def main() -> None:
    p = base_parser(__doc__, repeats=1)
    p.add_argument("--connections", type=int, nargs="+", default=[1, 32])
    p.add_argument("--seconds", type=int, default=10)
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="inkwell-serving-"))
    run_id = _train(root, args.data_dir)
    import torch

    from ml.data.images import load_images

    digit = load_images(f"idx:{args.data_dir / 'mnist-8k'}", args.data_dir).test.images[0]  # (1, 28, 28)
    body = json.dumps({"pixels": (digit[0] * 256).round().clamp(0, 255).to(torch.int64).tolist()})
    script = root / "predict.lua"
    script.write_text(LUA % body)
    results: dict = {"machine": machine_info(), "run_id": run_id, "results": {}}
    for batching in ("false", "true"):
        port = 18000 + (batching == "true")
        env = {**os.environ, "INKWELL_DATABASE_URL": f"sqlite:///{root / 'inkwell.db'}",
               "INKWELL_BROKER_URL": f"sqla+sqlite:///{root / 'broker.db'}",
               "INKWELL_ARTIFACTS_DIR": str(root / "artifacts"), "INKWELL_DATA_DIR": str(args.data_dir),
               "INKWELL_BATCHING": batching, "PORT": str(port)}
        api = subprocess.Popen([sys.executable, "-m", "api"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(300):
                try:
                    urllib.request.urlopen(base + "/healthz", timeout=1)
                    break
                except OSError:
                    time.sleep(0.1)
            _wrk(base + "/predict", 8, 3, script)  # warm-up: model loaded, batcher started
            probe = urllib.request.Request(base + "/predict", data=body.encode(),
                                           headers={"Content-Type": "application/json"})
            assert json.load(urllib.request.urlopen(probe, timeout=30))["run_id"] == run_id
            one = {f"predict_c{c}": _wrk(base + "/predict", c, args.seconds, script) for c in args.connections}
            one["healthz_c32"] = _wrk(base + "/healthz", 32, args.seconds, None)
            results["results"][f"batching={batching}"] = one
        finally:
            api.terminate()
            api.wait(30)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
