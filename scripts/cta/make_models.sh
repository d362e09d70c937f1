#!/bin/sh
# Regenerate the committed models and IRFs of the ctapipe chain (scripts/cta/models/).
# Runs simulation -> calibration -> reconstruction -> irf_production as jobs in a work
# directory, then copies the products and writes models/MANIFEST.json.
# Arguments are passed to make_models.py (e.g. --scale 0.5, --workdir DIR, --dry-run).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-"$HERE/../../.venv/bin/python"}
exec "$PYTHON" "$HERE/make_models.py" "$@"
