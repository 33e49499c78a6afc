"""Alembic migrations of the registry schema (``registry.server.models``)."""
