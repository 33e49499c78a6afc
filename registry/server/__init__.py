"""The registry service: everything that runs on the server side.

    app.py        the composition root, ``create_app(settings)``
    entry.py      the one door the command line uses (``modelseal serve``, ``modelseal admin``)
    config.py     settings (environment prefix ``MODELSEAL_``)
    db.py         engine, sessions, migrations; models.py: the ORM tables
    witness.py    the witness's own small app (``modelseal witness serve``), a second root
    api/          HTTP: deps, problems, middleware, routes, the pagination helper, uvicorn's
                  protocol for requests it cannot parse (httpproto.py)
    services/     business logic as plain classes (no FastAPI), with security events and
                  webhooks (events.py), rate limits (ratelimit.py) and the ML-BOM job queue
                  (bomjobs.py)
    storage/      blob stores (local directory, S3), the streaming upload pipe (pipe.py) and
                  resumable SHA-256 (hashstate.py)

Nothing here imports :mod:`registry.sdk` or :mod:`registry.cli`; importing this package
imports nothing heavy.
"""
