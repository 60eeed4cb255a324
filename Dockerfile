# One image for every Python service of inkwell: the API, the Celery worker and the one-shot migration.
# The README's steps, in a container: install requirements.txt, then run `alembic upgrade head`,
# `python -m api` or `python -m worker` from the project root.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    INKWELL_ARTIFACTS_DIR=/var/lib/inkwell/artifacts \
    INKWELL_CACHE_DIR=/var/lib/inkwell/cache \
    INKWELL_DATA_DIR=/var/lib/inkwell/data \
    INKWELL_HOST=0.0.0.0 \
    PORT=8000

WORKDIR /app
# Dependencies first so code changes do not reinstall them (torch from PyPI is the CUDA build).
COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY alembic.ini ./
COPY migrations ./migrations
COPY core ./core
COPY ml ./ml
COPY api ./api
COPY worker ./worker

# The artifacts folder is the store only without INKWELL_ARTIFACTS_URL; the cache and data folders are this
# container's own (compose mounts no volume on them).
RUN useradd --create-home --uid 1000 inkwell \
    && mkdir -p /var/lib/inkwell/artifacts /var/lib/inkwell/cache /var/lib/inkwell/data \
    && chown -R inkwell /var/lib/inkwell
USER inkwell

EXPOSE 8000
CMD ["python", "-m", "api"]
