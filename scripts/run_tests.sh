#!/usr/bin/env bash
# THE test command (CI runs it through .ci/run):
#   1. scripts/install_test_deps.sh   Debian packages, .venv, pip install -e '.[test,science]'
#      (then, in the background while 2 and 3 run: one `pytest --collect-only` byte-compiles
#      the code and the assertion-rewritten test modules, so that each worker need not)
#   2. scripts/slurm_start.sh         single-node Slurm on localhost
#   3. scripts/pg_start.sh            PostgreSQL on 127.0.0.1, database uws_test
#   4. pytest on tests/ in two processes at once (docs/benchmarks.md, "Suite time"):
#        - every module but the browser's on $UWS_TEST_WORKERS (default 6) pytest-xdist
#          workers, a module per work unit, the science modules in 3 groups (at most 3 at
#          once, longest first), then the Slurm ones (tests/conftest.py, tests/parallel.py);
#          each worker has its own PostgreSQL database <database>_gw<N>;
#        - tests/test_browser*.py in their own process (Playwright's greenlets);
#      then one totals line "N passed, N failed, N skipped, N crashed";
#      then `ruff check .` and `lint-imports` (the import contracts of .importlinter).
# Exports for the tests:
#   UWS_TEST_DATABASE_URL  SQLAlchemy URL of the test database (from pg_start.sh, unless
#                          already set); each pytest process derives its own from it
#   UWS_TEST_SHARED_DIR    a directory for this run, shared by every pytest process (the
#                          CTA chain built once, tests/cta_support.py), removed at the end
#   UWS_REQUIRE_SERVICES=1 tests needing Slurm/PostgreSQL/Chromium fail instead of skip
#   UWS_CHROMIUM_PATH      /usr/bin/chromium (Playwright: executable_path=...)
#   PYTHONFAULTHANDLER=1   a crashing interpreter prints every thread's stack
#   PATH                   with .venv/bin first
# Fails when a test fails, an interpreter crashes (a crashed test is counted, never run
# again: tests/parallel.py), pytest collects no test (exit 5), ruff finds a problem or an
# import contract is broken. The services are left running for reuse
# (scripts/slurm_stop.sh, scripts/pg_stop.sh stop them).
#
# Usage: bash scripts/run_tests.sh [pytest args...]
#   e.g. bash scripts/run_tests.sh -x -k infra          (to both pytest processes)
#        bash scripts/run_tests.sh tests/test_infra.py   (a path: one pytest process over
#                                                        exactly those, no workers)
#        UWS_TEST_WORKERS=3 bash scripts/run_tests.sh
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

# While the services start: byte-compile what the tests import, test modules with
# pytest's assertion rewriting, once (by a collection), instead of in each xdist worker.
env -u PYTHONDONTWRITEBYTECODE "$REPO_ROOT/.venv/bin/python" -m pytest \
    -q -p no:cacheprovider --collect-only tests >/dev/null 2>&1 &
COMPILE_PID=$!

step "start Slurm (scripts/slurm_start.sh)"
T=$SECONDS
bash scripts/slurm_start.sh
echo "[run_tests] slurm_start: $(elapsed "$T")"

step "start PostgreSQL (scripts/pg_start.sh)"
T=$SECONDS
PG_URL="$(bash scripts/pg_start.sh)"
[ -n "$PG_URL" ] || { echo "[run_tests] ERROR: pg_start.sh printed no URL" >&2; exit 1; }
echo "[run_tests] pg_start: $(elapsed "$T")"

# A database URL given in the environment is used instead (its server must be
# pg_start.sh's or alike): e.g. for a second run next to another one on one machine.
export UWS_TEST_DATABASE_URL="${UWS_TEST_DATABASE_URL:-$PG_URL}"
export UWS_REQUIRE_SERVICES=1
export UWS_CHROMIUM_PATH=/usr/bin/chromium
export PATH="$REPO_ROOT/.venv/bin:$PATH"
# A crash of the interpreter prints every thread's Python stack (pytest's own
# faulthandler covers its process; this covers the processes tests start too).
export PYTHONFAULTHANDLER=1
# Byte-compiled modules are kept (Python's default; __pycache__ is ignored by git): an
# environment that forbids them makes every pytest worker rewrite every test module's
# assertions, and every job, runner and CLI process the tests start compile its modules
# again.
unset PYTHONDONTWRITEBYTECODE
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

# What every pytest process of this run shares (tests/conftest.py: the CTA chain built
# once, behind a lock), removed at the end.
UWS_TEST_SHARED_DIR="$(mktemp -d "${TMPDIR:-/tmp}/uws-tests.XXXXXX")"
export UWS_TEST_SHARED_DIR
trap 'rm -rf "$UWS_TEST_SHARED_DIR"' EXIT

wait "$COMPILE_PID" || true  # its errors, if any, are the collection's: shown below

step "pytest"
T=$SECONDS
PYTEST=("$REPO_ROOT/.venv/bin/python" -m pytest -q -p no:cacheprovider)
# count WORD FILE: the number before WORD in pytest's last summary line of FILE (0 if none)
count() {
    local last
    last="$(grep -E '[0-9]+ (passed|failed|errors?|skipped|deselected)' "$2" | tail -n 1 || true)"
    printf '%s' "$last" | grep -oE "[0-9]+ $1" | grep -oE '[0-9]+' || echo 0
}
if [ "${#TARGETS[@]}" -eq 0 ]; then
    # Paths were given: one pytest process over exactly those.
    set +e
    "${PYTEST[@]}" "$@"
    PYTEST_RC=$?
    set -e
else
    # The whole suite, at once in two pytest processes:
    #  - every module but the browser's on $WORKERS pytest-xdist workers, a module (or an
    #    xdist_group) per work unit, the long ones first (tests/parallel.py,
    #    tests/conftest.py). Most tests wait (for servers, jobs, Slurm's passes), so there
    #    are more workers than cores. Each worker has its own PostgreSQL database.
    #  - tests/test_browser*.py in a process of their own (Playwright's greenlets: a
    #    greenlet freed from another thread has crashed this CPython), its output shown
    #    after the first one's.
    # A crash of an interpreter fails the run and is never hidden by a rerun: a worker
    # that dies is replaced, the test it was running is failed (never run again), the
    # other tests of its module go to another worker; tests/parallel.py lists each crash
    # on a "CRASHED ..." line, after faulthandler's stacks of every thread
    # (PYTHONFAULTHANDLER=1 above). A pytest process dying by a signal is a crash too.
    WORKERS="${UWS_TEST_WORKERS:-6}"
    MAIN_OUT="$(mktemp)" BROWSER_OUT="$(mktemp)"
    mapfile -t BROWSER < <(ls tests/test_browser*.py 2>/dev/null || true)
    BROWSER_PID=
    if [ "${#BROWSER[@]}" -gt 0 ]; then
        UWS_TEST_WORKER=browser "${PYTEST[@]}" "${BROWSER[@]}" "$@" >"$BROWSER_OUT" 2>&1 &
        BROWSER_PID=$!
    fi
    set +e
    "${PYTEST[@]}" -n "$WORKERS" --dist loadgroup --max-worker-restart "$WORKERS" \
        --ignore-glob='tests/test_browser*.py' tests "$@" 2>&1 | tee "$MAIN_OUT"
    MAIN_RC=${PIPESTATUS[0]}
    BROWSER_RC=5
    if [ -n "$BROWSER_PID" ]; then
        wait "$BROWSER_PID"
        BROWSER_RC=$?
    fi
    set -e
    if [ -n "$BROWSER_PID" ]; then
        step "pytest: ${BROWSER[*]} (their own process, run alongside)"
        cat "$BROWSER_OUT"
    fi
    PASSED=0 FAILED=0 SKIPPED=0 CRASHED=() PYTEST_RC=0
    for part in main browser; do
        if [ "$part" = main ]; then out="$MAIN_OUT" rc="$MAIN_RC" what="tests/ (xdist)"
        else out="$BROWSER_OUT" rc="$BROWSER_RC" what="${BROWSER[*]}"; fi
        PASSED=$((PASSED + $(count passed "$out")))
        FAILED=$((FAILED + $(count failed "$out") + $(count 'errors?' "$out")))
        SKIPPED=$((SKIPPED + $(count skipped "$out")))
        while IFS= read -r line; do
            CRASHED+=("${line#CRASHED }")
            # a test during which its worker died is in pytest's "failed" too
            case "$line" in *": outside a test ("*) ;; *) FAILED=$((FAILED - 1)) ;; esac
        done < <(grep -E '^CRASHED ' "$out" || true)
        if [ "$rc" -ge 128 ]; then
            echo "[run_tests] ERROR: pytest of $what died by signal $((rc - 128)) (stacks above)" >&2
            CRASHED+=("pytest of $what (signal $((rc - 128)))")
        fi
        case "$rc" in
            0 | 5) ;;  # 5: nothing selected in this part (e.g. -k); the total decides
            *)
                echo "[run_tests] pytest of $what: exit $rc" >&2
                PYTEST_RC=1
                ;;
        esac
    done
    rm -f "$MAIN_OUT" "$BROWSER_OUT"
    if [ "${#CRASHED[@]}" -gt 0 ]; then
        PYTEST_RC=1
        printf '[run_tests] ERROR: crashed: %s\n' "${CRASHED[@]}" >&2
    fi
    if [ "$PASSED" -eq 0 ] && [ "$PYTEST_RC" -eq 0 ]; then
        PYTEST_RC=5
    fi
    echo
    echo "${PASSED} passed, ${FAILED} failed, ${SKIPPED} skipped, ${#CRASHED[@]} crashed"
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
