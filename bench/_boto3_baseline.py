"""The raw-boto3 baseline of push_pull.py, run as its own process (like the modelseal CLI).

    python3 bench/_boto3_baseline.py upload   ENDPOINT BUCKET PREFIX SOURCE_DIR
    python3 bench/_boto3_baseline.py download ENDPOINT BUCKET PREFIX TARGET_DIR NAME...

Boto3 exactly as users call it, with DEFAULT settings: a fresh ``boto3.client("s3",
endpoint_url=...)`` (credentials and region from the standard AWS_* environment), then
``upload_file`` / ``download_file`` of one file after the other. Prints one JSON line with the
in-process times (``import_seconds``: ``import boto3``; ``seconds``: client creation and the
transfers), so the caller can tell interpreter start-up from transfer time.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    t0 = time.perf_counter()
    import boto3

    imported = time.perf_counter()
    action, endpoint, bucket, prefix, directory, *names = argv
    root = Path(directory)
    client = boto3.client("s3", endpoint_url=endpoint)
    if action == "upload":
        files = sorted(p for p in root.iterdir() if p.is_file())
        for path in files:
            client.upload_file(str(path), bucket, f"{prefix}/{path.name}")
    elif action == "download":
        root.mkdir(parents=True, exist_ok=True)
        for name in names:
            client.download_file(bucket, f"{prefix}/{name}", str(root / name))
    else:
        print(f"unknown action {action!r}", file=sys.stderr)
        return 2
    done = time.perf_counter()
    print(json.dumps({"import_seconds": imported - t0, "seconds": done - imported}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
