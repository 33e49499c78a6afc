"""Alembic migrations of the registry schema (``registry.models``)."""
