#!/usr/bin/env bash
# Install what the project needs from Debian 12 or 13 packages, only what is missing.
#   scripts/install.sh          runtime: Kamailio, MariaDB, rtpengine, SIPp, Python deps
#   scripts/install.sh --test   plus what the tests need (venv with pytest, sipvicious, ruff and mypy)
#   scripts/install.sh --bench  plus what `make bench` needs (matplotlib for its plot, valgrind
#                               for make bench-instructions)
#   scripts/install.sh --compile plus what `make compile` needs (gcc, python3-dev; .venv with mypy,
#                               whose mypyc compiles the routing: kemi_tools/compile.py)
#   scripts/install.sh --cluster plus what `make cluster` needs (Galera, keepalived; docs/cluster.md)
#   scripts/install.sh --python only the Python packages Kamailio's embedded python3 imports
#                               (make install: Kamailio itself is already there)
#   scripts/install.sh --image  what building and running the container image needs
#                               (podman, buildah, runc, debootstrap: tests/e2e/test_image.py)
#   scripts/install.sh --debroot debootstrap only (scripts/debroot.py: make test-debian13)
#   scripts/install.sh --deb    what `make deb` needs to build the Debian package (debhelper,
#                               dh-python, lintian: scripts/deb.py)
# Package scripts must not start daemons with Debian's default configs (those are not
# ours): a policy-rc.d forbids service starts during the install and is removed after.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=(python3-mysqldb python3-cachetools)
# nftables: the per-source packet limit in front of rtpengine's relay ports that `make run`,
# the image and `make cluster` load (kemi_tools/stack/relay_guard.py, docs/security.md)
RUNTIME=(kamailio kamailio-python3-modules kamailio-mysql-modules kamailio-extra-modules
         kamailio-utils-modules kamailio-tls-modules kamailio-websocket-modules mariadb-server mariadb-client
         rtpengine-daemon nftables sip-tester make "${PYTHON[@]}")
# python3-yaml: tests/unit/test_docker_files.py reads the compose file;
# python3-pip, python3-setuptools: `pip install --no-build-isolation .` with Debian's python3
# (tests/e2e/test_install.py); Debian 13 pulls in neither by itself;
# baresip-core, chromium: the real softphone and browser of the media-security tests (docs/media.md);
# nftables: the home routers' source NAT of the NAT tests (tests/harness/nat.py)
TESTING=(python3-venv iproute2 openssl python3-yaml python3-pip python3-setuptools baresip-core chromium
         nftables)
command -v npm >/dev/null 2>&1 || TESTING+=(npm)
# make compile (mypyc): gcc and the headers of Debian's python3, the interpreter app_python3 embeds;
# setuptools runs the build (Debian 13's venv has none of its own)
COMPILE=(build-essential python3-dev python3-venv python3-setuptools)
# make bench-instructions measures the compiled routing too (--configs python-compiled)
BENCH=(python3-matplotlib valgrind "${COMPILE[@]}")
# the cluster (docs/cluster.md): a Galera cluster (galera-4, state transfer by rsync), the
# floating address (keepalived); the same package names on Debian 12 and 13
CLUSTER=(galera-4 rsync keepalived iproute2)
# the image: the base is a debootstrap root (no registry), podman runs it with runc (crun fails
# on hybrid cgroups: docs/docker.md)
IMAGE=(podman buildah runc debootstrap)
# the Debian package (make deb; debian/control's Build-Depends, build-essential, which
# dpkg-buildpackage requires of every build, and lintian); the tests build it and install it
# into a fresh root (tests/e2e/test_deb_package.py: debootstrap for that root)
DEB=(build-essential debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools lintian debootstrap)

# Debian 12 (Kamailio 5.6) and 13 (Kamailio 6.0) are the tested releases; the same package
# names serve both. Anything else gets a warning and the same names.
. /etc/os-release
case "${ID:-}:${VERSION_ID:-}" in
    debian:12|debian:13) ;;
    *) echo "install: warning: kemi is tested on Debian 12 and 13, this is ${PRETTY_NAME:-unknown}:" \
            "trying Debian's package names (docs/install.md)" >&2 ;;
esac

want=("${RUNTIME[@]}")
[[ "${1:-}" == "--python" ]] && want=("${PYTHON[@]}")
[[ "${1:-}" == "--test" ]] && want+=("${TESTING[@]}" "${CLUSTER[@]}" "${DEB[@]}")
[[ "${1:-}" == "--cluster" ]] && want+=("${CLUSTER[@]}")
[[ "${1:-}" == "--bench" ]] && want+=("${BENCH[@]}")
[[ "${1:-}" == "--compile" ]] && want+=("${COMPILE[@]}")
[[ "${1:-}" == "--image" ]] && want=("${IMAGE[@]}")
[[ "${1:-}" == "--debroot" ]] && want=(debootstrap)
[[ "${1:-}" == "--deb" ]] && want=("${DEB[@]}")

missing=()
for pkg in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done

if ((${#missing[@]})); then
    echo "install: installing ${missing[*]}"
    policy=/usr/sbin/policy-rc.d
    created_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && created_policy=1
    fi
    trap '[[ $created_policy == 1 ]] && rm -f "$policy"' EXIT
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ "${1:-}" == "--test" || "${1:-}" == "--compile" ]]; then
    # the tests run on the interpreter Kamailio embeds (Debian's python3), in a venv that
    # also sees Debian's mysqlclient and cachetools; make compile builds with its mypyc for
    # that same interpreter
    if [[ ! -x .venv/bin/python ]]; then
        /usr/bin/python3 -m venv --system-site-packages .venv
    fi
    if ! .venv/bin/python -c 'import pytest, sipvicious, ruff, mypy' 2>/dev/null; then
        .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
    fi
fi

if [[ "${1:-}" == "--test" ]]; then
    # the WebRTC test's sample page: JsSIP bundled for the browser, playwright-core to drive
    # Debian's chromium (no browser download), versions pinned in tests/web/package.json
    if [[ ! -f tests/web/jssip.js || ! -d tests/web/node_modules/playwright-core ]]; then
        (cd tests/web && npm install --no-audit --no-fund --loglevel=error && npm run --silent build)
    fi
fi
