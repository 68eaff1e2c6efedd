#!/usr/bin/env bash
# Install what `make test` needs, and only what is missing (a second run is a no-op in ~1 s):
#   1. OS packages: mariadb-server, redis-server, haproxy (the real servers the tests start),
#      openssl (a test certificate for Redis over TLS), systemd (systemd-analyze verifies the
#      units in packaging/systemd) and make, with apt-get, noninteractive. Nothing is started:
#      the tests start their own servers on free ports.
#   2. A virtualenv $VENV (default .venv) with this package installed editable with its [test]
#      extras; reinstalled when pyproject.toml changes.
# Environment: PYTHON (default python3, must be >= 3.11), VENV (default .venv).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
OS_PACKAGES=(mariadb-server redis-server haproxy make openssl systemd)

log() { echo "setup: $*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
    log "apt-get install $*"
    export DEBIAN_FRONTEND=noninteractive
    # policy-rc.d-less hosts start the services: harmless, our tests never use the default ports.
    as_root apt-get update -qq
    as_root apt-get install -y -qq -o Dpkg::Use-Pty=0 "$@" >/dev/null
}

is_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

install_os_packages() {
    if ! command -v dpkg-query >/dev/null; then
        log "not a Debian-like system: install ${OS_PACKAGES[*]} yourself (tests skip without them)"
        return 0
    fi
    local missing=() p
    for p in "${OS_PACKAGES[@]}"; do is_installed "$p" || missing+=("$p"); done
    if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
}

check_python() {
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
        log "$PYTHON is $("$PYTHON" -V 2>&1); mpp-agent needs Python >= 3.11"
        exit 1
    }
}

make_venv() {
    if "$VENV/bin/python" -c 'import sys' 2>/dev/null; then return 0; fi
    rm -rf "$VENV"
    if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
        # Debian's own python3 ships venv/ensurepip separately.
        rm -rf "$VENV"
        command -v dpkg-query >/dev/null && apt_install python3-venv
        "$PYTHON" -m venv "$VENV"
    fi
    log "created $VENV ($("$VENV/bin/python" -V))"
}

install_package() {
    local stamp="$VENV/.mpp-installed" want
    want=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
    log "pip install -e .[test] into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e '.[test]'
    echo "$want" >"$stamp"
}

install_os_packages
check_python
make_venv
install_package
