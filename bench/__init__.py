"""The benchmarks: scripts run as modules from the repository root (``python3 -m bench.NAME``),
so that ``bench._common`` and ``tests.services`` import without any ``sys.path`` edits."""
