#!/usr/bin/env bash
# sgp32-hil bootstrap: installs what is missing (Debian packages, a venv with the project), then
#   ./dev.sh run  [sgp32-hil run options]   the conformance plan on the embedded virtual bench
#   ./dev.sh test [pytest options]          the project's own tests
#   ./dev.sh cli  <sgp32-hil arguments>     any other sgp32-hil command, inside the venv
set -euo pipefail
cd "$(dirname "$0")"

DEB_PACKAGES=(pcscd vsmartcard-vpcd libpcsclite-dev pcsc-tools socat python3-venv python3-dev gcc chromium)
VENV=.venv

need_debs() {
    local missing=()
    for p in "${DEB_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "dev.sh: installing Debian packages: ${missing[*]}" >&2
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "dev.sh: run as root or install: ${missing[*]}" >&2; exit 1; }
        sudo=(sudo)
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

need_venv() {
    local py=${PYTHON:-python3}
    "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || { echo "dev.sh: Python >= 3.11 is required ($py is $("$py" -V 2>&1))" >&2; exit 1; }
    [ -x "$VENV/bin/python" ] || "$py" -m venv "$VENV"
    local stamp="$VENV/.stamp-$(sha256sum pyproject.toml | cut -c1-16)"
    if [ ! -f "$stamp" ]; then
        echo "dev.sh: installing the project and its Python dependencies into $VENV" >&2
        "$VENV/bin/python" -m pip install -q --upgrade pip
        "$VENV/bin/python" -m pip install -q -e '.[test]'
        rm -f "$VENV"/.stamp-* && touch "$stamp"
    fi
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
    run)  need_debs; need_venv; exec "$VENV/bin/sgp32-hil" run "$@" ;;
    cli)  need_debs; need_venv; exec "$VENV/bin/sgp32-hil" "$@" ;;
    test)
        need_debs; need_venv
        rc=0; "$VENV/bin/python" -m pytest "$@" || rc=$?
        if [ "$rc" -eq 5 ]; then echo "dev.sh: pytest collected no tests: failing" >&2; exit 1; fi
        exit "$rc" ;;
    *) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
