#!/usr/bin/env bash
# Install everything the test suite needs on a Debian 12 machine, idempotently:
#   1. Debian packages: Slurm (slurmctld, slurmd, client), munge, PostgreSQL with pgSphere,
#      STILTS (taplint, the TAP validator), graphviz,
#      Chromium, fonts, procps. `apt-get update` runs only when a package is missing and
#      the package lists cannot provide it.
#   2. The project venv `.venv` (Python 3.12), created only if missing or broken.
#   3. `pip install -e '.[test,science]'` into it, skipped when the install recorded for
#      the current setup.py/pyproject.toml is still in place; then `ctaplot==0.6.6`
#      with --no-deps, for its CTA prod3b performance tables (the fast path's IRFs).
# When everything is present this is a quick no-op (well under a second).
#
# Usage: bash scripts/install_test_deps.sh
# Env:   UWS_PYTHON=/path/to/python3.12   use this interpreter to create the venv
#        UWS_INSTALL_PROFILE=serve         only what running the service needs (graphviz,
#                                          the venv, '.[science]'); default: test
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO_ROOT/.venv"
STAMP="$VENV/.uws-${UWS_INSTALL_PROFILE:-test}-deps.stamp"

PROFILE="${UWS_INSTALL_PROFILE:-test}"
case "$PROFILE" in
    test)
        APT_PACKAGES=(
            slurmctld slurmd slurm-client munge
            postgresql
            postgresql-15-pgsphere
            stilts
            graphviz
            chromium
            fonts-dejavu-core fonts-liberation2
            procps
        )
        EXTRAS="test,science"
        ;;
    serve)
        APT_PACKAGES=(graphviz procps)
        EXTRAS="science"
        ;;
    *)
        printf 'UWS_INSTALL_PROFILE must be test or serve, not %s\n' "$PROFILE" >&2
        exit 2
        ;;
esac

log() { printf '[install_test_deps] %s\n' "$*"; }
die() { printf '[install_test_deps] ERROR: %s\n' "$*" >&2; exit 1; }

# One install at a time per checkout (colleagues may run the test command concurrently).
LOCK_FILE="${TMPDIR:-/tmp}/uws-install-test-deps-$(printf '%s' "$REPO_ROOT" | md5sum | cut -c1-12).lock"
exec 9>"$LOCK_FILE"
if ! flock -n 9; then
    log "another install for $REPO_ROOT is running; waiting for it (lock $LOCK_FILE)"
    flock 9
fi

# ---------------------------------------------------------------------------- apt
missing_packages() {
    local pkg status
    for pkg in "${APT_PACKAGES[@]}"; do
        status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
        [ "$status" = "installed" ] || printf '%s\n' "$pkg"
    done
}

apt_lists_lack() {
    # True when the local package lists are empty or cannot provide one of the packages.
    local pkg policy
    compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null || return 0
    for pkg in "$@"; do
        # Captured first: `apt-cache | grep -q` would fail under pipefail (SIGPIPE).
        policy="$(apt-cache policy "$pkg" 2>/dev/null || true)"
        case "$policy" in
            *"Candidate: (none)"* | "") return 0 ;;
            *"Candidate: "*) ;;
            *) return 0 ;;
        esac
    done
    return 1
}

apt_install() {
    apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "$@"
}

mapfile -t MISSING < <(missing_packages)
if [ "${#MISSING[@]}" -eq 0 ]; then
    log "step 1/3: Debian packages: all ${#APT_PACKAGES[@]} present (${APT_PACKAGES[*]})"
else
    log "step 1/3: Debian packages: missing: ${MISSING[*]}"
    [ "$(id -u)" -eq 0 ] || die "installing Debian packages needs root; run as root or install: ${MISSING[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # The packages' postinst scripts would start daemons; a temporary policy-rc.d that
    # exits 101 forbids that (only if there is none already; removed afterwards).
    POLICY_RC=/usr/sbin/policy-rc.d
    CREATED_POLICY=0
    if [ ! -e "$POLICY_RC" ]; then
        log "creating temporary $POLICY_RC (exit 101) so no daemon starts during install"
        printf '#!/bin/sh\n# temporary, from uws-server scripts/install_test_deps.sh\nexit 101\n' >"$POLICY_RC"
        chmod 755 "$POLICY_RC"
        CREATED_POLICY=1
    fi
    cleanup_policy() {
        if [ "$CREATED_POLICY" -eq 1 ]; then
            rm -f "$POLICY_RC"
            log "removed temporary $POLICY_RC"
        fi
    }
    trap cleanup_policy EXIT
    if apt_lists_lack "${MISSING[@]}"; then
        log "package lists are missing or do not offer every package: apt-get update"
        apt-get -o DPkg::Lock::Timeout=600 update
    else
        log "package lists already offer every missing package: no apt-get update"
    fi
    log "apt-get install --no-install-recommends ${MISSING[*]}"
    if ! apt_install "${MISSING[@]}"; then
        log "install failed (stale package lists?): apt-get update, then one retry"
        apt-get -o DPkg::Lock::Timeout=600 update
        apt_install "${MISSING[@]}" || die "apt-get install failed for: ${MISSING[*]}"
    fi
    cleanup_policy
    trap - EXIT
    mapfile -t STILL_MISSING < <(missing_packages)
    [ "${#STILL_MISSING[@]}" -eq 0 ] || die "still not installed after apt-get: ${STILL_MISSING[*]}"
    log "Debian packages installed"
fi

# ---------------------------------------------------------------------------- venv
is_python312() {
    "$1" -c 'import sys, venv, ensurepip; sys.exit(0 if sys.version_info[:2] == (3, 12) else 1)' \
        >/dev/null 2>&1
}

find_python312() {
    local cand
    local -a cands=()
    [ -n "${UWS_PYTHON:-}" ] && cands+=("$UWS_PYTHON")
    # On PATH it may be a pyenv shim that refuses to run: is_python312 runs it to be sure.
    command -v python3.12 >/dev/null 2>&1 && cands+=("$(command -v python3.12)")
    # pyenv versions, newest first.
    while IFS= read -r cand; do
        [ -n "$cand" ] && cands+=("$cand")
    done < <(compgen -G '/root/.pyenv/versions/3.12*/bin/python3.12' | sort -rV || true)
    if [ -n "${PYENV_ROOT:-}" ] && [ "$PYENV_ROOT" != /root/.pyenv ]; then
        while IFS= read -r cand; do
            [ -n "$cand" ] && cands+=("$cand")
        done < <(compgen -G "$PYENV_ROOT/versions/3.12*/bin/python3.12" | sort -rV || true)
    fi
    for cand in "${cands[@]}"; do
        if is_python312 "$cand"; then
            printf '%s\n' "$cand"
            return 0
        fi
    done
    return 1
}

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c \
    'import sys; sys.exit(0 if sys.version_info[:2] == (3, 12) else 1)' >/dev/null 2>&1; then
    log "step 2/3: venv: $VENV exists ($("$VENV/bin/python" --version 2>&1))"
else
    if [ -e "$VENV" ]; then
        log "step 2/3: venv: $VENV exists but its python is missing, broken or not 3.12: recreating it"
        rm -rf "$VENV"
    else
        log "step 2/3: venv: $VENV missing: creating it"
    fi
    PY312="$(find_python312)" || die "Python 3.12 not found: tried \$UWS_PYTHON, python3.12 on PATH and /root/.pyenv/versions/3.12*/bin/python3.12. Install Python 3.12 (with venv) or set UWS_PYTHON=/path/to/python3.12."
    log "using $PY312 ($("$PY312" --version 2>&1))"
    "$PY312" -m venv "$VENV"
    rm -f "$STAMP"
    log "venv created"
fi

# ---------------------------------------------------------------------------- pip
deps_fingerprint() {
    # What the install depends on: the packaging files and where the checkout lives.
    {
        printf '%s\n' "$REPO_ROOT" "$EXTRAS"
        "$VENV/bin/python" --version 2>&1
        local f
        for f in setup.py setup.cfg pyproject.toml; do
            if [ -f "$REPO_ROOT/$f" ]; then
                printf '== %s\n' "$f"
                cat "$REPO_ROOT/$f"
            fi
        done
    } | sha256sum | cut -d' ' -f1
}

editable_install_present() {
    # uws-server is installed in the venv, editable, from this very checkout.
    # -I: the checkout's own uws_server.egg-info in the cwd must not be what is found.
    "$VENV/bin/python" -I - "$REPO_ROOT" <<'PY' >/dev/null 2>&1
import importlib.metadata as md
import json
import pathlib
import sys

try:
    dist = md.distribution("uws-server")
except md.PackageNotFoundError:
    sys.exit(1)
info = json.loads(dist.read_text("direct_url.json") or "{}")
if not info.get("dir_info", {}).get("editable"):
    sys.exit(1)
want = pathlib.Path(sys.argv[1]).resolve().as_uri().rstrip("/")
sys.exit(0 if info.get("url", "").rstrip("/") == want else 1)
PY
}

FINGERPRINT="$(deps_fingerprint)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$FINGERPRINT" ] && editable_install_present; then
    log "step 3/3: python packages: uws-server[$EXTRAS] already installed (editable, setup.py unchanged)"
else
    if [ -f "$STAMP" ]; then
        log "step 3/3: python packages: setup.py/pyproject.toml changed or install incomplete: reinstalling"
    else
        log "step 3/3: python packages: no record of an install: installing"
    fi
    log "pip install -e '${REPO_ROOT}[$EXTRAS]'"
    "$VENV/bin/python" -m pip install --disable-pip-version-check -e "${REPO_ROOT}[$EXTRAS]" \
        || die "pip install -e '.[$EXTRAS]' failed"
    editable_install_present || die "pip finished but uws-server is not installed editable from $REPO_ROOT"
    printf '%s\n' "$FINGERPRINT" >"$STAMP"
    log "python packages installed"
fi

# ctaplot only for its data files: the CTA prod3b performance tables the fast path's IRFs
# are built from (scripts/cta/prod3b.py reads them where pip puts them, <venv>/ctaplot/).
# --no-deps: its own requirements would pull Jupyter, and nothing of it is imported.
CTAPLOT_PIN="ctaplot==0.6.6"
if "$VENV/bin/python" -I -c 'import importlib.metadata as m, sys; sys.exit(m.version("ctaplot") != "0.6.6")' \
    >/dev/null 2>&1; then
    log "step 3/3: $CTAPLOT_PIN (CTA prod3b performance tables) already installed"
else
    log "step 3/3: pip install --no-deps $CTAPLOT_PIN (CTA prod3b performance tables)"
    "$VENV/bin/python" -m pip install --disable-pip-version-check --no-deps "$CTAPLOT_PIN" \
        || die "pip install --no-deps $CTAPLOT_PIN failed"
fi

log "done"
