"""`python -m api`: serve the API with uvicorn on INKWELL_HOST (default 127.0.0.1) and PORT (default 8000).

Local by default: only this machine can connect. Set INKWELL_HOST=0.0.0.0 to accept connections from other
machines (docker-compose.yml does so inside its own network, where the container's port is published).
"""

import os

import uvicorn

from core.settings import get_settings

DEFAULT_HOST = "127.0.0.1"


def host() -> str:
    """The address to bind: INKWELL_HOST, else 127.0.0.1 (an empty value counts as unset)."""
    # TODO: a `host` field of core.settings.Settings (INKWELL_HOST) once that file takes it.
    return os.environ.get("INKWELL_HOST", "").strip() or DEFAULT_HOST


def main() -> None:
    settings = get_settings()
    uvicorn.run("api.main:create_app", factory=True, host=host(), port=settings.port, proxy_headers=True)


if __name__ == "__main__":
    main()
