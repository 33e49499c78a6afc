"""The HTTP API: dependencies, problem documents, middleware and thin routes over the services.

:func:`registry.server.app.create_app` assembles them; the request and response models are
:mod:`registry.wire`, shared with the SDK.
"""
