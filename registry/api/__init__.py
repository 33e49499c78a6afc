"""The HTTP API: ``create_app(settings)`` and thin routes over the services."""

from registry.api.app import create_app

__all__ = ["create_app"]
