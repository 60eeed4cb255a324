"""`python -m worker`: one Celery worker training runs; `python -m worker --ping`: is the broker reachable?

The worker serves the training queue of its device (INKWELL_WORKER_DEVICE: auto, cpu or gpu; see
core/queue.py): `<INKWELL_QUEUE_PREFIX>gpu` or `<INKWELL_QUEUE_PREFIX>cpu`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from kombu.utils.url import maybe_sanitize_url

from core.errors import one_line
from core.queue import make_celery, queue_name, training_queues
from core.settings import Settings, get_settings

LOG_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"


class DeviceUnavailable(RuntimeError):
    """INKWELL_WORKER_DEVICE asks for a device this machine (or INKWELL_DEVICE) cannot train on."""


def worker_device(settings: Settings) -> str:
    """The device whose queue this worker serves, "gpu" or "cpu": INKWELL_WORKER_DEVICE, where auto is gpu
    when torch sees a CUDA device (and INKWELL_DEVICE does not pin the CPU); DeviceUnavailable for gpu
    without one. Imports torch (--ping does not call it)."""
    if settings.worker_device == "cpu":
        return "cpu"
    import torch

    from worker.training import DEVICE_ENV

    pinned = (os.environ.get(DEVICE_ENV) or "").strip()
    pinned_cpu = pinned.split(":")[0].lower() == "cpu"
    cuda = torch.cuda.is_available()
    if settings.worker_device == "gpu":
        if not cuda:
            raise DeviceUnavailable("INKWELL_WORKER_DEVICE=gpu but no CUDA device is available "
                                    "(torch.cuda.is_available() is False); start it with "
                                    "INKWELL_WORKER_DEVICE=cpu or auto")
        if pinned_cpu:
            raise DeviceUnavailable(f"INKWELL_WORKER_DEVICE=gpu but {DEVICE_ENV}={pinned} trains on the CPU; "
                                    f"unset {DEVICE_ENV} or start it with INKWELL_WORKER_DEVICE=cpu")
        return "gpu"
    return "gpu" if cuda and not pinned_cpu else "cpu"


def ping(timeout: float = 5.0) -> tuple[bool, str]:
    """(reachable, one-line message) for the settings' broker; the worker's queue (both queues when its
    device is auto) is declared and counted."""
    where = "broker"
    try:
        settings = get_settings()
        where = maybe_sanitize_url(settings.broker_url)  # password masked
        device = settings.worker_device
        queues = training_queues(settings) if device == "auto" else [queue_name(device, settings)]
        app = make_celery(settings)
        with app.connection_for_write(connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
            waiting = [conn.default_channel.queue_declare(queue=queue, durable=True, auto_delete=False).message_count
                       for queue in queues]
    except Exception as exc:
        return False, f"broker unreachable: {where}: {one_line(exc, with_type=True)}"
    counts = ", ".join(f"queue {queue!r}: {n} waiting" for queue, n in zip(queues, waiting, strict=True))
    return True, f"broker reachable: {where} ({counts})"


def run_worker(device: str) -> None:
    """Run one worker: solo pool (one run at a time, no fork after torch/CUDA start), its device's queue."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    from worker.training import DEVICE_ENV  # imports torch: only when a worker really starts

    if device == "cpu" and not os.environ.get(DEVICE_ENV):
        os.environ[DEVICE_ENV] = "cpu"  # a cpu worker trains on the CPU, also on a machine with a GPU
    from worker.app import celery_app, worker_name

    settings = get_settings()
    celery_app.worker_main([
        "worker", "--pool", "solo", "--concurrency", "1", "--queues", queue_name(device, settings),
        "--hostname", worker_name(), "--loglevel", "INFO",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ping", action="store_true", help="exit 0 if the broker is reachable, else 1")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds --ping waits for the broker")
    args = parser.parse_args(argv)
    if args.ping:
        ok, message = ping(args.timeout)
        print(message, file=sys.stdout if ok else sys.stderr)
        return 0 if ok else 1
    try:
        device = worker_device(get_settings())
    except DeviceUnavailable as exc:
        print(exc, file=sys.stderr)
        return 2
    run_worker(device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
