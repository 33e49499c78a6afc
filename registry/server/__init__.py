"""The registry service: everything that runs on the server side.

    app.py        the composition root, ``create_app(settings)``
    entry.py      the one door the command line uses (``modelseal serve``, ``modelseal admin``)
    config.py     settings (environment prefix ``MODELSEAL_``)
    db.py         engine, sessions, migrations; models.py: the ORM tables
    events.py     security events and webhooks; ratelimit.py: token buckets
    hashstate.py  resumable SHA-256; pipe.py: the streaming upload pipe
    api/          HTTP: deps, problems, middleware, routes
    services/     business logic as plain classes (no FastAPI)
    storage/      blob stores (local directory, S3)

Nothing here imports :mod:`registry.sdk` or :mod:`registry.cli`; importing this package
imports nothing heavy.
"""
