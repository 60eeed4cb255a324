"""`python -m api`: serve the API with uvicorn on PORT (default 8000)."""

import uvicorn

from core.settings import get_settings


def main() -> None:
    settings = get_settings()
    uvicorn.run("api.main:create_app", factory=True, host="0.0.0.0", port=settings.port, proxy_headers=True)


if __name__ == "__main__":
    main()
