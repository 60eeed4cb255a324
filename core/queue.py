"""The Celery application both sides share: the API sends training tasks by name, the worker runs them.

Keeping the configuration here lets api/ and worker/ agree on queue names and delivery guarantees
without importing each other.

Two training queues, `<INKWELL_QUEUE_PREFIX>gpu` and `<INKWELL_QUEUE_PREFIX>cpu`; a worker serves the one of its
device. A run asks for a device (`runs.device_request`): "gpu" or "cpu" sends its message to that queue, "any"
to both, and the first worker to claim the run trains it (the other message finds it claimed and is dropped).
"""

from __future__ import annotations

import uuid

from celery import Celery

from core.settings import Settings, ensure_dirs, get_settings

TRAIN_TASK = "inkwell.train_run"
EVALUATE_TASK = "inkwell.evaluate"  # scoring a run's checkpoint (core/evaluations.py): same queues as training
DEVICE_REQUESTS = ("gpu", "cpu", "any")  # what a run may ask for (runs.device_request)
WORKER_QUEUES = ("gpu", "cpu")  # the queue suffixes; a worker serves one


def queue_name(device: str, settings: Settings | None = None) -> str:
    """The training queue of a worker device ("gpu" or "cpu"): `<queue_prefix><device>`."""
    if device not in WORKER_QUEUES:
        raise ValueError(f"no training queue for device {device!r}; use one of {', '.join(WORKER_QUEUES)}")
    return f"{(settings or get_settings()).queue_prefix}{device}"


def training_queues(settings: Settings | None = None) -> list[str]:
    """Every training queue: [`<prefix>gpu`, `<prefix>cpu`]."""
    return [queue_name(device, settings) for device in WORKER_QUEUES]


def queues_for(device_request: str, settings: Settings | None = None) -> list[str]:
    """The queues a run asking for `device_request` is sent to: gpu or cpu its own queue, any both."""
    if device_request == "any":
        return training_queues(settings)
    if device_request not in DEVICE_REQUESTS:
        raise ValueError(f"unknown device request {device_request!r}; use one of {', '.join(DEVICE_REQUESTS)}")
    return [queue_name(device_request, settings)]


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
        task_default_queue=queue_name("gpu", s),  # every send names its queue (enqueue_training)
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


def enqueue_training(app: Celery, run_id: str, settings: Settings | None = None,
                     device_request: str = "any") -> str:
    """Send the training message of `run_id` to each queue of `device_request` (queues_for); returns the
    Celery task id, one id shared by the run's messages of this send."""
    task_id = str(uuid.uuid4())
    for queue in queues_for(device_request, settings or get_settings()):
        app.send_task(TRAIN_TASK, args=[run_id], queue=queue, task_id=task_id)
    return task_id


def enqueue_evaluation(app: Celery, evaluation_id: str, settings: Settings | None = None,
                       device_request: str = "any") -> str:
    """Send an evaluation's message to the queues of its run's device request, as training does."""
    task_id = str(uuid.uuid4())
    for queue in queues_for(device_request, settings or get_settings()):
        app.send_task(EVALUATE_TASK, args=[evaluation_id], queue=queue, task_id=task_id)
    return task_id
