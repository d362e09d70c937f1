#!/bin/sh
# Regenerate the committed models and IRFs of the ctapipe chain (scripts/cta/models/).
# Runs simulation -> calibration -> reconstruction -> irf_production as jobs in a work
# directory, then copies the products and writes models/MANIFEST.json.
# Arguments are passed to cta.make_models (e.g. --scale 0.5, --workdir DIR, --dry-run).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-"$HERE/../../.venv/bin/python"}
PYTHONPATH="$HERE/..:$HERE/../.." exec "$PYTHON" -P -m cta.make_models "$@"
