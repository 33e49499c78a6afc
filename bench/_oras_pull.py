"""The OCI pull of oci_pull.py, with the ORAS Python SDK, run as its own process (like the CLI).

    MODELSEAL_TOKEN=... python3 bench/_oras_pull.py HOST:PORT NS/NAME:TAG TARGET_DIR

``oras.client.OrasClient(hostname, insecure=True)`` (plain HTTP), the API token as the password
of HTTP basic auth (docs/oci.md: the token endpoint hands it back as the Bearer token), then
``pull`` into TARGET_DIR: manifest, then every layer written under its title annotation. Prints
one JSON line with the in-process times (``import_seconds``: ``import oras.client``;
``seconds``: client creation and the pull).
"""

from __future__ import annotations

import json
import os
import sys
import time


def main(argv: list[str]) -> int:
    t0 = time.perf_counter()
    import oras.client

    imported = time.perf_counter()
    host, reference, target = argv
    client = oras.client.OrasClient(hostname=host, insecure=True)
    client.auth.set_basic_auth("bench", os.environ["MODELSEAL_TOKEN"].strip())
    files = client.pull(target=f"{host}/{reference}", outdir=target)
    done = time.perf_counter()
    print(json.dumps({"import_seconds": imported - t0, "seconds": done - imported,
                      "files": len(files)}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
