"""consentry's HTTP service (FastAPI). ``create_app(db_target, ...)`` builds it."""

from consentry.api.app import create_app

__all__ = ["create_app"]
