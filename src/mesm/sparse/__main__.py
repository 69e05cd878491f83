"""``python -m mesm.sparse``: builds the compiled sparse engine if needed and prints which engine
runs (``scripts/install.sh`` calls it)."""

from mesm.sparse.engine import main

main()
