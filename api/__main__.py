"""`python -m api`: serve the API with uvicorn on INKWELL_HOST (default 127.0.0.1) and PORT (default 8000).

Local by default: only this machine can connect. Set INKWELL_HOST=0.0.0.0 to accept connections from other
machines (the Dockerfile and docker-compose.yml do so inside the container, whose port is published).
INKWELL_WEB_CONCURRENCY=N runs N processes on the one port (uvicorn workers), each with its own loaded models
and batchers; INKWELL_ACCESS_LOG=false drops the line per request.
"""

import uvicorn

from core.settings import get_settings

GRACEFUL_SHUTDOWN_SECONDS = 5  # open event streams are closed after this on SIGTERM


def main() -> None:
    settings = get_settings()
    uvicorn.run("api.main:create_app", factory=True, host=settings.host, port=settings.port, proxy_headers=True,
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS, workers=settings.web_concurrency,
                access_log=settings.access_log)


if __name__ == "__main__":
    main()
