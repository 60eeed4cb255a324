"""The FastAPI application: `create_app()` wires settings, database, queue, routes and error handling."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import torch
from fastapi import Depends, FastAPI
from sqlalchemy.orm import sessionmaker

from api.access import authorize, parse_keys
from api.errors import install_error_handlers
from api.limits import InferenceAdmission, InferenceGate, JsonBodyLimit
from api.model_cache import ModelCache
from api.observability import install_metrics, make_metrics
from api.openapi import install_openapi
from api.routes import (
    compare,
    dashboard,
    datasets,
    evaluations,
    health,
    inference,
    models,
    report,
    runs,
    sweeps,
    training,
    workers,
)
from api.serving import ClassifierBatchers, TransliteratorBatchers
from api.serving_view import ServingView
from core.db import make_engine
from core.queue import make_celery
from core.settings import Settings, ensure_dirs, get_settings
from core.storage import open_artifacts
from ml.kinds import load_kind_modules

DESCRIPTION = """
Train, track and serve small deep-learning models, one declaration per kind (`GET /models`): the KMNIST
image classifier (CNN) and a character-level Spanish→English seq2seq model are built in.
`POST /train` queues a job for a Celery worker;
`GET /runs/{id}/metrics` follows it epoch by epoch; `/predict`, `/activation-maps` and `/transliterate`
answer with trained models.

Every error is `{"detail": "<one line>"}` (`ErrorResponse`); a request that breaks a rule of this schema gets a
422 that also lists `errors` per field. With an API key configured (INKWELL_API_KEY), requests send it in
`X-API-Key` (or `Authorization: Bearer …`); without it they get 401.
"""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Startup: move the objects of a freshly started server (modules, schemas, routes) out of the garbage
    collector's sight. Python's full collections walk every tracked object; with torch and the app loaded
    that took long enough to stall every request in flight (p99 of /predict at 32 connections 180 ms with,
    32 ms without, docs/benchmarks.md). Shutdown: stop the batcher threads once their queued work is done."""
    if app.state.settings.gc_freeze:
        gc.collect()
        gc.freeze()
    yield
    app.state.batchers.close()
    app.state.search_batchers.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    load_kind_modules(settings.kind_modules)  # kinds registered outside ml/kinds (INKWELL_KIND_MODULES)
    ensure_dirs(settings)
    if settings.inference_threads:
        torch.set_num_threads(settings.inference_threads)  # this thread and the threads started after it
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = FastAPI(title="inkwell", version="0.1.0", description=DESCRIPTION, dependencies=[Depends(authorize)],
                  lifespan=lifespan)
    app.state.api_keys = parse_keys(settings.api_keys, settings.api_key)
    metrics = make_metrics()
    engine = make_engine(settings.database_url)
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = sessionmaker(engine, expire_on_commit=False)
    app.state.celery = make_celery(settings)
    app.state.store = open_artifacts(settings)
    app.state.models = ModelCache(settings.model_cache_size)
    app.state.serving = ServingView(app.state.sessionmaker, app.state.store, app.state.models,
                                    settings.serving_refresh_seconds)
    app.state.inference_gate = InferenceGate(settings.inference_concurrency, settings.inference_waiting)
    app.state.batchers = ClassifierBatchers(settings, metrics.serving)
    app.state.search_batchers = TransliteratorBatchers(settings, metrics.serving)
    app.add_middleware(JsonBodyLimit, limit=settings.max_body_bytes)
    refused = {"/predict": app.state.batchers.stats, "/transliterate": app.state.search_batchers.stats}
    app.add_middleware(InferenceAdmission, limit=settings.inference_max_in_flight,
                       on_reject=lambda path: refused[path].observe_rejected() if path in refused else None)
    install_error_handlers(app)
    install_metrics(app, metrics)
    # inference first: routes are matched in order, and /predict is the hot path (a few % of its time)
    for module in (inference, health, training, datasets, runs, evaluations, sweeps, models, workers, compare, report,
                   dashboard):
        app.include_router(module.router)
    install_openapi(app)
    return app
