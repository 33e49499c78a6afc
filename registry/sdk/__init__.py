"""The Python SDK: talks to a registry over HTTP and verifies what it pulls.

    client.py     :class:`RegistryClient`: HTTP setup, the JSON endpoints and record readers; its
                  push, pull and verification methods delegate to the three modules below
    push.py       chunked, resumable uploads and push; signer checks; external registration
    pull.py       verified pull: staged, hashed downloads, fsync, atomic rename or exchange
    trust.py      the registry key (pinned), signed status, release/pending/local-gate checks,
                  audit-log head and chain
    logcheck.py   the transparency log: its key (pinned), checkpoints (fresh, witnessed,
                  consistent with the newest seen), a version's status event, an alias's move
    training.py   :class:`TrainingRun`: record a training job's inputs, push with provenance
    export.py     export a version's evidence for offline audit; online verification
    lineage.py    a version's verified dependency tree and ML-BOM
    pins.py       trust-on-first-use pins of registry keys and log keys, newest checkpoints
    records.py    read answers as plain, hand-checked records (no pydantic on the CLI's read path)
    redirects.py  a day's memory, per registry, of a store this machine cannot reach (presigned
                  downloads then stream through the registry at once)
    resume.py     the journal of unfinished uploads, so a push resumes where it stopped
    transfer.py   the HTTP transport (retries, presigned URLs); filesink.py: atomic downloads

Nothing here imports :mod:`registry.server`; the request and response models it shares with the
server are :mod:`registry.wire` (``records.py`` mirrors them field for field, and a test holds
the two together).
"""
