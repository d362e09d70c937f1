#!/usr/bin/env bash
# Install what the service needs and start it on the embedded default: SQLite (WAL) in
# var/, the local pool of workers, the demo job definitions in job_definitions/.
#   1. scripts/install_test_deps.sh with UWS_INSTALL_PROFILE=serve (graphviz, .venv on
#      Python 3.12, pip install -e '.[science]'); a no-op when already done.
#   2. On the first start, a user 'admin' (admin, operator) whose token is printed once
#      and kept in var/admin_token (mode 0600).
#   3. uws-server serve, with any arguments given (e.g. --port 9000 --host 0.0.0.0).
# Settings: settings.yml, each overridable as UWS_<KEY> (e.g. UWS_PORT=9000).
#
# Usage: bash scripts/serve.sh [--host H] [--port P] [--config FILE]
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

UWS_INSTALL_PROFILE=serve bash scripts/install_test_deps.sh
PY="$REPO_ROOT/.venv/bin/python"

if [ -z "$("$PY" -m uws_server user list)" ]; then
    VAR_DIR="$("$PY" -c 'from uws_server.config import load_settings; print(load_settings().var_dir)')"
    mkdir -p "$VAR_DIR"
    TOKEN="$("$PY" -m uws_server user add admin --admin --roles operator)"
    (umask 077 && printf '%s\n' "$TOKEN" >"$VAR_DIR/admin_token")
    printf '\n[serve] first start: created user "admin" (admin, operator).\n'
    printf '[serve] its token (shown once, also in %s): %s\n' "$VAR_DIR/admin_token" "$TOKEN"
    printf '[serve] more users: .venv/bin/uws-server user add NAME [--roles operator]\n\n'
fi

exec "$REPO_ROOT/.venv/bin/uws-server" serve "$@"
