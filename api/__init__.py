"""inkwell's HTTP API (FastAPI). Serves predictions in-process; queues training through Celery."""
