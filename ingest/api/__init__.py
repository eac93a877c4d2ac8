"""The HTTP API (FastAPI). `create_app(settings)` builds it; `swc api` serves it."""

from .app import create_app

__all__ = ["create_app"]
