"""`python -m worker`: one Celery worker training runs; `python -m worker --ping`: is the broker reachable?"""

from __future__ import annotations

import argparse
import logging
import sys

from kombu.utils.url import maybe_sanitize_url

from core.errors import one_line
from core.queue import make_celery
from core.settings import get_settings

LOG_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"


def ping(timeout: float = 5.0) -> tuple[bool, str]:
    """(reachable, one-line message) for the settings' broker; the train queue is declared and counted."""
    where = "broker"
    try:
        settings = get_settings()
        where = maybe_sanitize_url(settings.broker_url)  # password masked
        app = make_celery(settings)
        with app.connection_for_write(connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
            declared = conn.default_channel.queue_declare(queue=settings.train_queue, durable=True,
                                                          auto_delete=False)
    except Exception as exc:
        return False, f"broker unreachable: {where}: {one_line(exc, with_type=True)}"
    waiting = declared.message_count
    return True, f"broker reachable: {where} (queue {settings.train_queue!r}: {waiting} waiting)"


def run_worker() -> None:
    """Run one worker: solo pool (one run at a time, no fork after torch/CUDA start), the train queue."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    from worker.app import celery_app, worker_name  # imports torch: only when a worker really starts

    settings = get_settings()
    celery_app.worker_main([
        "worker", "--pool", "solo", "--concurrency", "1", "--queues", settings.train_queue,
        "--hostname", worker_name(), "--loglevel", "INFO",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    parser.add_argument("--ping", action="store_true", help="exit 0 if the broker is reachable, else 1")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds --ping waits for the broker")
    args = parser.parse_args(argv)
    if args.ping:
        ok, message = ping(args.timeout)
        print(message, file=sys.stdout if ok else sys.stderr)
        return 0 if ok else 1
    run_worker()
    return 0


if __name__ == "__main__":
    sys.exit(main())
