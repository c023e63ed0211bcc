"""The avitalk web app: ``avitalk serve`` (docs/web-app.md). Needs ``starlette`` and ``uvicorn``."""

from __future__ import annotations

__all__ = ["ServerConfig", "create_app", "serve"]


def __getattr__(name: str):  # the server module imports nothing heavy until used
    if name in __all__:
        from avitalk.app import server

        return getattr(server, name)
    raise AttributeError(f"module 'avitalk.app' has no attribute {name!r}")
