"""The HTTP API: :func:`registry.api.app.create_app` and thin routes over the services.

Importing this package imports nothing heavy, so the SDK can share :mod:`registry.api.schemas`
without loading FastAPI or SQLAlchemy.
"""
