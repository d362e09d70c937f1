#!/usr/bin/env bash
# THE test command (CI runs it through .ci/run):
#   1. scripts/install_test_deps.sh   Debian packages, .venv, pip install -e '.[test,science]'
#   2. scripts/slurm_start.sh         single-node Slurm on localhost
#   3. scripts/pg_start.sh            PostgreSQL on 127.0.0.1, database uws_test
#   4. pytest on tests/ (arguments are passed through), then `ruff check .` and
#      `lint-imports` (the import contracts of .importlinter: docs/architecture.md)
# Exports for the tests:
#   UWS_TEST_DATABASE_URL  SQLAlchemy URL of the test database (from pg_start.sh)
#   UWS_REQUIRE_SERVICES=1 tests needing Slurm/PostgreSQL/Chromium fail instead of skip
#   UWS_CHROMIUM_PATH      /usr/bin/chromium (Playwright: executable_path=...)
#   PATH                   with .venv/bin first
# Fails when pytest fails, collects no test (exit 5), ruff finds a problem or an import
# contract is broken. The services
# are left running for reuse (scripts/slurm_stop.sh, scripts/pg_stop.sh stop them).
#
# Usage: bash scripts/run_tests.sh [pytest args...]
#   e.g. bash scripts/run_tests.sh -x -k infra
#        bash scripts/run_tests.sh tests/test_infra.py   (a path replaces the default tests/)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

step() { printf '\n==> [run_tests] %s\n' "$*"; }
elapsed() { printf '%s s' "$((SECONDS - $1))"; }

T0=$SECONDS
step "install test dependencies (scripts/install_test_deps.sh)"
T=$SECONDS
bash scripts/install_test_deps.sh
echo "[run_tests] install_test_deps: $(elapsed "$T")"

step "start Slurm (scripts/slurm_start.sh)"
T=$SECONDS
bash scripts/slurm_start.sh
echo "[run_tests] slurm_start: $(elapsed "$T")"

step "start PostgreSQL (scripts/pg_start.sh)"
T=$SECONDS
PG_URL="$(bash scripts/pg_start.sh)"
[ -n "$PG_URL" ] || { echo "[run_tests] ERROR: pg_start.sh printed no URL" >&2; exit 1; }
echo "[run_tests] pg_start: $(elapsed "$T")"

export UWS_TEST_DATABASE_URL="$PG_URL"
export UWS_REQUIRE_SERVICES=1
export UWS_CHROMIUM_PATH=/usr/bin/chromium
export PATH="$REPO_ROOT/.venv/bin:$PATH"
# A crash of the interpreter prints every thread's Python stack (pytest's own
# faulthandler covers its process; this covers the processes tests start too).
export PYTHONFAULTHANDLER=1
echo "[run_tests] UWS_TEST_DATABASE_URL=$UWS_TEST_DATABASE_URL"
echo "[run_tests] UWS_REQUIRE_SERVICES=$UWS_REQUIRE_SERVICES"
echo "[run_tests] UWS_CHROMIUM_PATH=$UWS_CHROMIUM_PATH"

# The default target is tests/, unless an argument names a path (file, dir or node id).
TARGETS=(tests)
for arg in "$@"; do
    case "$arg" in
        -*) ;;
        *)
            if [ -e "${arg%%::*}" ]; then
                TARGETS=()
                break
            fi
            ;;
    esac
done

step "pytest"
T=$SECONDS
PYTEST=("$REPO_ROOT/.venv/bin/python" -m pytest -q -p no:cacheprovider)
if [ "${#TARGETS[@]}" -eq 0 ]; then
    # Paths were given: one pytest run over exactly those.
    set +e
    "${PYTEST[@]}" "$@"
    PYTEST_RC=$?
    set -e
else
    # The whole suite: one pytest process per module, every tests/test_browser*.py last
    # (Playwright's greenlets). A module whose interpreter dies by a signal (a crash)
    # is never run again: it fails the run, with faulthandler's stacks of every thread
    # in its output, and the other modules' results are still counted.
    mapfile -t MODULES < <(ls tests/test_*.py | grep -v '^tests/test_browser'; ls tests/test_browser*.py 2>/dev/null || true)
    PASSED=0 FAILED=0 ERRORS=0 SKIPPED=0 PYTEST_RC=0 CRASHED=()
    OUT="$(mktemp)"
    for module in "${MODULES[@]}"; do
        set +e
        "${PYTEST[@]}" "$module" "$@" 2>&1 | tee "$OUT"
        rc=${PIPESTATUS[0]}
        set -e
        if [ "$rc" -ge 128 ]; then
            echo "[run_tests] ERROR: $module: the interpreter died by signal $((rc - 128)) (stacks above)" >&2
            CRASHED+=("$module")
        fi
        last="$(grep -E '[0-9]+ (passed|failed|error|skipped)' "$OUT" | tail -n 1 || true)"
        count() { printf '%s' "$last" | grep -oE "[0-9]+ $1" | grep -oE '[0-9]+' || echo 0; }
        PASSED=$((PASSED + $(count passed))); FAILED=$((FAILED + $(count failed)))
        ERRORS=$((ERRORS + $(count 'errors?'))); SKIPPED=$((SKIPPED + $(count skipped)))
        case "$rc" in
            0 | 5) ;;  # 5: this module had nothing selected (e.g. -k); the total decides
            *)
                echo "[run_tests] $module: pytest exit $rc" >&2
                PYTEST_RC=1
                ;;
        esac
    done
    rm -f "$OUT"
    if [ "$PASSED" -eq 0 ] && [ "$PYTEST_RC" -eq 0 ]; then
        PYTEST_RC=5
    fi
    echo
    echo "${PASSED} passed, $((FAILED + ERRORS)) failed, ${SKIPPED} skipped, ${#CRASHED[@]} crashed${CRASHED[*]:+ (${CRASHED[*]})}"
fi
echo "[run_tests] pytest: exit $PYTEST_RC, $(elapsed "$T")"
if [ "$PYTEST_RC" -eq 5 ]; then
    echo "[run_tests] ERROR: pytest collected no tests (exit 5): counted as a failure" >&2
fi

step "ruff check ."
T=$SECONDS
set +e
"$REPO_ROOT/.venv/bin/ruff" check .
RUFF_RC=$?
set -e
echo "[run_tests] ruff: exit $RUFF_RC, $(elapsed "$T")"

step "lint-imports (.importlinter)"
T=$SECONDS
set +e
"$REPO_ROOT/.venv/bin/lint-imports" --no-cache
IMPORTS_RC=$?
set -e
echo "[run_tests] lint-imports: exit $IMPORTS_RC, $(elapsed "$T")"

echo
echo "[run_tests] total $(elapsed "$T0"); services left running (scripts/slurm_stop.sh, scripts/pg_stop.sh)"
if [ "$PYTEST_RC" -ne 0 ] || [ "$RUFF_RC" -ne 0 ] || [ "$IMPORTS_RC" -ne 0 ]; then
    echo "[run_tests] FAILED (pytest exit $PYTEST_RC, ruff exit $RUFF_RC, lint-imports exit $IMPORTS_RC)" >&2
    exit 1
fi
echo "[run_tests] OK"
