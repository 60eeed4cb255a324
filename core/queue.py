"""The Celery application both sides share: the API sends training tasks by name, the worker runs them.

Keeping the configuration here lets api/ and worker/ agree on queue names and delivery guarantees
without importing each other.
"""

from __future__ import annotations

from celery import Celery

from core.settings import Settings, ensure_dirs, get_settings

TRAIN_TASK = "inkwell.train_run"


def _is_sqla(url: str) -> bool:
    """True for the SQLAlchemy-backed kombu transport (`sqla+...`, `sqlalchemy+...`)."""
    return url.startswith(("sqla+", "sqlalchemy+"))


def make_celery(settings: Settings | None = None) -> Celery:
    """A Celery app on `settings.broker_url`: late acks, requeue on worker loss, one task at a time."""
    s = settings or get_settings()
    ensure_dirs(s)
    app = Celery("inkwell", broker=s.broker_url, backend=s.result_backend)
    app.conf.update(
        task_acks_late=True,  # a message is acknowledged only after training ends ...
        task_reject_on_worker_lost=True,  # ... and goes back to the queue if the worker dies
        worker_prefetch_multiplier=1,  # never hold a second training while one runs
        worker_concurrency=1,
        task_default_queue=s.train_queue,
        task_routes={TRAIN_TASK: {"queue": s.train_queue}},
        task_ignore_result=True,  # results live in the database
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        # Redis: redeliver an unacked message only after 12 h (the reaper requeues dead runs sooner). The
        # SQLAlchemy transport passes its options to create_engine, which rejects this key.
        broker_transport_options={} if _is_sqla(s.broker_url) else {"visibility_timeout": 12 * 3600},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    return app


def enqueue_training(app: Celery, run_id: str, settings: Settings | None = None) -> str:
    """Queue the training of `run_id`; returns the Celery task id."""
    s = settings or get_settings()
    return app.send_task(TRAIN_TASK, args=[run_id], queue=s.train_queue).id
