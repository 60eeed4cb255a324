"""Fixtures for the serving tests: tiny real models trained once per session, and apps serving them.

Import the fixtures into a test module (`from tests.api.trained import serving, trained  # noqa: F401`).
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy.orm import Session

from api.main import create_app
from core import results, runs
from core.migrate import upgrade_head
from core.settings import Settings
from core.storage import checkpoint_key
from ml.checkpoint import load_checkpoint
from ml.config import TrainConfig
from ml.data.images import ImageSet, load_images
from ml.training import fit
from tests.support import TEST_PROCESS

UNUSED_BROKER = "redis://127.0.0.1:6379/14"  # the serving routes never touch the broker
WORKER = "test-worker"


@dataclass
class TrainedModels:
    """Checkpoints of real (tiny) trained models, plus held-out digits the CNN never saw."""

    cnn: Path  # 2 epochs on 1500 mnist-8k digits
    cnn_other: Path  # 1 epoch, another seed: different weights of the same shape
    seq2seq_attention: Path
    seq2seq_plain: Path
    digits: ImageSet  # (N, 1, 28, 28) test-split digits and their labels
    classes: list[str]


def _train(config: TrainConfig, data_dir: Path, out: Path) -> Path:
    return fit(config, data_dir=data_dir, out_dir=out, resume=False, device="cpu").checkpoint


@pytest.fixture(scope="session")
def trained(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrainedModels]:
    """Trained once per session, with torch on one thread (the machine's few cores are shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("trained")
    images = f"idx:{shared_data / 'mnist-8k'}"
    pairs = f"pairs:{shared_data / 'spa-eng'}"
    cnn = TrainConfig.for_model("cnn", images, epochs=2, batch_size=16, learning_rate=0.001, limit=1500)
    cnn_other = TrainConfig.for_model(
        "cnn", images, epochs=1, batch_size=16, learning_rate=0.001, limit=300, seed=7
    )
    s2s = {"epochs": 1, "limit": 300, "hidden_size": 32, "batch_size": 32}
    splits = load_images(images, shared_data)
    yield TrainedModels(
        cnn=_train(cnn, shared_data, root / "cnn"),
        cnn_other=_train(cnn_other, shared_data, root / "cnn-other"),
        seq2seq_attention=_train(
            TrainConfig.for_model("seq2seq", pairs, attention=True, **s2s),
            shared_data,
            root / "s2s-attention",
        ),
        seq2seq_plain=_train(
            TrainConfig.for_model("seq2seq", pairs, attention=False, **s2s), shared_data, root / "s2s-plain"
        ),
        digits=ImageSet(splits.test.images[:12], splits.test.labels[:12]),
        classes=splits.classes,
    )
    torch.set_num_threads(threads)


def replace_file(source: Path, target: Path) -> None:
    """Put a copy of `source` at `target` the way the worker writes checkpoints (new file + rename)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def add_run(
    app: FastAPI,
    model: str,
    checkpoint: Path | None,
    val_metrics: list[float],
    status: str = "succeeded",
    dataset: str | None = None,
) -> str:
    """A run of `app` with these epoch metrics, ending in `status`; `checkpoint` copied into its folder."""
    config = load_checkpoint(checkpoint)["config"] if checkpoint else {"model": model, "epochs": 1}
    name = dataset or ("mnist-8k" if model == "cnn" else "spa-eng")
    with app.state.sessionmaker() as session:
        (run,) = runs.create_runs(session, [{**config, "data": name}], model, name)
        if status != "queued":
            assert runs.claim_run(session, run.id, WORKER, "cpu", 600) is not None
        for epoch, value in enumerate(val_metrics, start=1):
            results.record_epoch(session, run.id, epoch, 1.0 / epoch, value, 0.1)
        if checkpoint is not None:
            replace_file(checkpoint, app.state.store.local_path(checkpoint_key(run.id)))
        if status in ("succeeded", "failed", "cancelled"):
            runs.finish_run(session, run.id, status, worker=WORKER)
    return run.id


@dataclass
class Serving:
    """A test app on a fresh migrated database with its own artifacts folder."""

    app: FastAPI
    client: TestClient
    settings: Settings
    run_ids: dict[str, str] = field(default_factory=dict)

    def session(self) -> Session:
        return self.app.state.sessionmaker()

    def add_run(
        self,
        model: str,
        checkpoint: Path | None,
        val_metrics: list[float],
        status: str = "succeeded",
        dataset: str | None = None,
    ) -> str:
        return add_run(self.app, model, checkpoint, val_metrics, status, dataset)

    def promote(self, model: str, run_id: str) -> None:
        with self.session() as session:
            results.promote(session, model, run_id)


def build_serving(root: Path, data_dir: Path, api_key: str | None = None, database_url: str | None = None,
                  **overrides: Any) -> Serving:
    """A fresh app under `root` (artifacts; the database a new SQLite file there unless `database_url`,
    already migrated, is given); the caller closes `client`."""
    url = database_url or f"sqlite:///{root / 'inkwell.db'}"
    if database_url is None:
        upgrade_head(url)
    settings = Settings(
        database_url=url,
        broker_url=UNUSED_BROKER,
        artifacts_dir=root / "artifacts",
        cache_dir=root / "cache",
        data_dir=data_dir,
        api_key=api_key,
        max_upload_bytes=200_000,
        max_image_pixels=4_000_000,
        **{**TEST_PROCESS, **overrides},
    )
    app = create_app(settings)
    return Serving(app=app, client=TestClient(app, raise_server_exceptions=False), settings=settings)


@pytest.fixture
def make_serving(
    tmp_path: Path, shared_data: Path, db_backend: str, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Serving]]:
    """A factory of empty serving apps (one folder each) on `db_backend` (a SQLite file, or a throwaway
    migrated PostgreSQL database: which run serves is a database query), closed after the test."""
    made: list[Serving] = []

    def make(api_key: str | None = None, **overrides: Any) -> Serving:
        url = request.getfixturevalue("pg_database")(migrated=True) if db_backend == "postgresql" else None
        serving = build_serving(tmp_path / f"app{len(made)}", shared_data, api_key=api_key, database_url=url,
                                **overrides)
        assert serving.app.state.engine.dialect.name == db_backend
        made.append(serving)
        return serving

    yield make
    for serving in made:
        serving.client.close()
        serving.app.state.engine.dispose()


# One app per module on SQLite: these tests are about the models' answers; which run serves (a
# database query) is tested on both databases with `make_serving`.
@pytest.fixture(scope="module")
def serving(
    trained: TrainedModels, shared_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Serving]:
    """One app serving the trained CNN and both seq2seq models (attention is the best seq2seq run)."""
    made = build_serving(tmp_path_factory.mktemp("serving"), shared_data)
    made.run_ids["cnn"] = made.add_run("cnn", trained.cnn, [0.5, 0.8])
    made.run_ids["seq2seq_attention"] = made.add_run("seq2seq", trained.seq2seq_attention, [0.9])
    made.run_ids["seq2seq_plain"] = made.add_run("seq2seq", trained.seq2seq_plain, [1.5])
    yield made
    made.client.close()
    made.app.state.engine.dispose()


def digit_levels(image: torch.Tensor) -> np.ndarray:
    """(1, 28, 28) in [0, 1) -> (28, 28) uint8, bright ink on black (the dataset's own bytes)."""
    return np.clip(np.rint(image[0].numpy() * 256.0), 0, 255).astype(np.uint8)


def encode(im: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


def digit_png_dark_on_light(image: torch.Tensor, side: int = 280) -> bytes:
    """The digit enlarged to side x side, dark ink on a white background, as PNG."""
    im = Image.fromarray(255 - digit_levels(image)).resize((side, side), Image.Resampling.BILINEAR)
    return encode(im, "PNG")


def digit_jpeg_light_on_dark(image: torch.Tensor, size: tuple[int, int] = (200, 240)) -> bytes:
    """The digit stretched to `size`, light ink on black, as an RGB JPEG."""
    im = Image.fromarray(digit_levels(image)).resize(size, Image.Resampling.BILINEAR).convert("RGB")
    return encode(im, "JPEG")
