"""``python -m registry`` runs the ``modelseal`` command line."""

from registry.cli import main

main()
