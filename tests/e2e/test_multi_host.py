"""Machines that share no disk: an API and two workers, each in a private folder, meeting only in PostgreSQL,
Redis and an S3 object store (a real SeaweedFS server).

A 3-rate sweep on an uploaded dataset is shared by both workers; the worker training one of the runs is
SIGKILLed after an epoch, and the other resumes that run from the checkpoint in the object store. The
models then answer /predict and /transliterate from the store, and every artifact the API lists downloads.
"""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from ml.data.idx import read_idx
from tests.fixtures.seaweedfs import SeaweedFS, seaweedfs  # noqa: F401 - the fixture
from tests.fixtures.services import (
    ApiProcess,
    Service,
    WorkerProcess,
    delete_queue_keys,
    redis_db,  # noqa: F401 - the fixture
    service_env,
)
from tests.support import wait_for

pytestmark = pytest.mark.services

RATES = [0.003, 0.001, 0.0005]
EPOCHS = 4


class Machines:
    """An API and workers, each with its own folder as working directory, data folder and cache."""

    def __init__(self, tmp: Path, base_env: dict[str, str]) -> None:
        self.tmp, self.base_env = tmp, base_env
        self.workers: list[WorkerProcess] = []
        self.api = ApiProcess(self._env("api"), tmp / "api.log", cwd=self._home("api"))
        self.service = Service(self.api, self.workers)

    def _home(self, name: str) -> Path:
        home = self.tmp / name
        (home / "data").mkdir(parents=True, exist_ok=True)
        return home

    def _env(self, name: str) -> dict[str, str]:
        home = self._home(name)
        return {**self.base_env, "INKWELL_DATA_DIR": str(home / "data"), "INKWELL_CACHE_DIR": str(home / "cache"),
                "INKWELL_ARTIFACTS_DIR": str(home / "unused-artifacts")}

    def start_worker(self) -> WorkerProcess:
        name = f"worker{len(self.workers) + 1}"
        worker = WorkerProcess(self._env(name), self.tmp / f"{name}.log", cwd=self._home(name))
        self.workers.append(worker)
        return worker

    def stop(self) -> None:
        self.service.stop()


@pytest.fixture
def machines(tmp_path: Path, pg_database, redis_db: str, seaweedfs: SeaweedFS) -> Iterator[Machines]:  # noqa: F811
    prefix = f"test-{uuid.uuid4().hex[:12]}-"
    env = service_env(database_url=pg_database(migrated=True), broker_url=redis_db,
                      artifacts_dir=tmp_path / "unused", data_dir=tmp_path / "unused", queue_prefix=prefix,
                      lease_seconds=4, heartbeat_seconds=1, worker_device="cpu",
                      artifacts_url=f"s3://inkwell-{uuid.uuid4().hex[:10]}/artifacts",
                      s3_endpoint_url=seaweedfs.endpoint_url)
    env.update(seaweedfs.env())
    found = Machines(tmp_path, env)
    try:
        yield found
    finally:
        found.stop()
        delete_queue_keys(redis_db, prefix)


def _upload(http: httpx.Client, name: str, files: list[tuple[str, bytes]]) -> dict:
    response = http.post("/datasets", data={"name": name}, files=[("file", f) for f in files])
    assert response.status_code == 201, response.text
    return response.json()


def _pairs_files(shared_data: Path) -> list[tuple[str, bytes]]:
    train = (shared_data / "spa-eng" / "train-eng-spa.txt").read_text(encoding="utf-8").splitlines()[:1200]
    val = (shared_data / "spa-eng" / "val-eng-spa.txt").read_text(encoding="utf-8").splitlines()[:150]
    return [("train-small.txt", ("\n".join(train) + "\n").encode()),
            ("val-small.txt", ("\n".join(val) + "\n").encode())]


def _claims(log: str) -> list[str]:
    return re.findall(r"run ([0-9a-f]{32}) claimed by", log)


def test_workers_sharing_no_disk_train_resume_and_serve_through_the_object_store(machines: Machines,
                                                                                  shared_data: Path) -> None:
    api, http = machines.api, machines.api.client
    workers = [machines.start_worker(), machines.start_worker()]
    api.wait_ready()
    for worker in workers:
        worker.wait_ready()

    digits = sorted((shared_data / "mnist-8k").iterdir())
    uploaded = _upload(http, "digits-upload", [(p.name, p.read_bytes()) for p in digits])
    assert (uploaded["kind"], uploaded["source"], uploaded["counts"]["images"]) == ("images", "upload", 8000)
    pairs = _upload(http, "spa-small", _pairs_files(shared_data))
    assert pairs["kind"] == "pairs" and pairs["counts"]["train"] == 1200

    sweep = machines.service.train(model="cnn", dataset="digits-upload", learning_rates=RATES, epochs=EPOCHS,
                                   limit=800, batch_size=16, device="cpu")
    run_ids = sweep["run_ids"]

    # Kill the worker of a run that has checkpointed at least one epoch (and has epochs left to train).
    def training_with_an_epoch() -> dict | None:
        machines.service.check_alive()
        for run_id in run_ids:
            m = machines.service.metrics(run_id)
            if m["status"] == "running" and 1 <= len(m["epochs"]) < EPOCHS - 1:
                return machines.service.run(run_id)
        return None

    victim_run = wait_for(training_with_an_epoch, "a run with a checkpointed epoch", 180, 0.1, machines.service.logs)
    victim = next(w for w in workers if w.name == victim_run["worker"])
    survivor = next(w for w in workers if w is not victim)
    victim.kill()
    machines.workers.remove(victim)  # the service no longer expects it alive

    finished = [machines.service.wait_finished(run_id, timeout=300) for run_id in run_ids]
    assert [r["status"] for r in finished] == ["succeeded"] * 3, machines.service.logs()
    assert set(_claims(victim.log())) and set(_claims(survivor.log())) - {victim_run["id"]}  # both took runs
    resumed = machines.service.run(victim_run["id"])
    assert resumed["worker"] == survivor.name and resumed["attempt"] == 2
    assert resumed["host"] and resumed["device"] == "cpu"
    assert f"run {victim_run['id']}: checkpoint fetched" in survivor.log()
    assert re.search(rf"run {victim_run['id']} claimed by .* resuming after epoch [1-9]", survivor.log())
    for run_id in run_ids:
        assert [e["epoch"] for e in machines.service.metrics(run_id)["epochs"]] == list(range(1, EPOCHS + 1))

    s2s = machines.service.train(model="seq2seq", dataset="spa-small", epochs=1, hidden_size=32, attention=True)
    assert machines.service.wait_finished(s2s["run_id"], timeout=300)["status"] == "succeeded"

    # Serving: the API holds no file of the runs but what it fetched into its own cache.
    image_file = next(p for p in digits if "-images-" in p.name)
    pixels = np.asarray(read_idx(image_file)[0]).tolist()  # (28, 28) uint8
    predicted = http.post("/predict", json={"pixels": pixels})
    assert predicted.status_code == 200, predicted.text
    assert predicted.json()["run_id"] in run_ids
    said = http.post("/transliterate", json={"text": "hola ."})
    assert said.status_code == 200 and said.json()["run_id"] == s2s["run_id"], said.text
    api_files = [p.relative_to(machines.tmp / "api") for p in (machines.tmp / "api").rglob("*.pt")]
    assert api_files and all(p.parts[0] == "cache" for p in api_files)

    # Every artifact the API lists downloads, with the size it lists.
    for run_id in [*run_ids, s2s["run_id"]]:
        listed = http.get(f"/runs/{run_id}/artifacts").json()["artifacts"]
        assert {a["name"] for a in listed} == {"checkpoint.pt", "best.pt", "loss.png", "validation.png"}
        for artifact in listed:
            body = http.get(artifact["url"])
            assert body.status_code == 200 and len(body.content) == artifact["size_bytes"] > 0
        checkpoint = http.get(f"/runs/{run_id}/checkpoint")
        assert checkpoint.status_code == 200
        saved = torch.load(io.BytesIO(checkpoint.content), map_location="cpu", weights_only=False)
        assert saved["epoch"] == (EPOCHS if run_id in run_ids else 1)

    # Nothing went to a local artifacts folder on any machine: the store holds it all.
    for home in ("api", "worker1", "worker2"):
        assert not (machines.tmp / home / "unused-artifacts").exists()
