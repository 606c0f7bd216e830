#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian bookworm machine: Debian packages,
# npm dependencies, and the cached Go builds of the local control plane. Safe to run repeatedly;
# each step is skipped when already done. With --images (what `npm test` passes) it also makes
# the slow, cached inputs of the OCI images (`npm run images -- --prepare`: Node.js, production
# dependencies, Debian bases; about 15 min on a fresh machine, then seconds), so the test run
# only assembles the images; `npm start` does not need them and does not pass it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '[setup] %s\n' "$*" >&2; }

with_images=0
for arg in "$@"; do
  case "$arg" in
    --images) with_images=1 ;;
    *) echo "usage: scripts/setup.sh [--images]" >&2; exit 64 ;;
  esac
done

# Debian packages: bubblewrap sandboxes pod processes, chromium runs browser tests, openssl makes
# the local cluster's certificates, util-linux provides nsenter/setpriv, nano is the shell image's
# editor (tests open it), python3 drives terminals in tests (python3-venv: the moto venv below), gcc and libc6-dev build the shell
# image's audit wrapper (C, statically linked), golang is the fallback Go. redis-server, postgresql
# and haproxy back the multi-replica mode (tests start their own throwaway instances on loopback;
# `npm start` never starts them).
need=()
for pkg in bubblewrap chromium openssl util-linux ca-certificates nano python3 python3-venv gcc libc6-dev redis-server postgresql haproxy; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ! command -v go >/dev/null 2>&1; then need+=(golang-go); fi
if [ ${#need[@]} -gt 0 ]; then
  say "installing Debian packages: ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# npm dependencies, from the lock file; reinstalled only when the lock changed.
stamp=node_modules/.periscope-lock-hash
want=$(sha256sum package-lock.json | cut -c1-64)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "installing npm dependencies (npm ci)"
  # Native modules (better-sqlite3, bufferutil) compile against Node's headers. Without network
  # access to nodejs.org, node-gyp must use the headers installed with Node itself.
  node_prefix=$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")
  if [ -z "${npm_config_nodedir:-}" ] && [ -f "$node_prefix/include/node/node.h" ]; then
    export npm_config_nodedir="$node_prefix"
  fi
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi

# Go builds of kube-apiserver, kubectl, etcd, helm and the process-backed node (cached by their
# inputs; a cold build prints one [build] line per step: 10-25 min on 2 cores, once).
say "local control plane binaries: $(bash e2e/k8s/build.sh)"

# The image build's slow inputs, for the tests that run the images (e2e/images, e2e/deploy).
# scripts/images.sh installs mmdebstrap, skopeo and umoci on first use.
if [ "$with_images" = 1 ]; then
  say "image build inputs (npm run images -- --prepare; cold: about 15 min once, then cached)"
  bash scripts/images.sh --prepare
fi

# The local AWS of the eks backend's tests (e2e/k8s/aws): moto from PyPI in its own venv, outside
# the repository; reinstalled only when the pinned version changes.
moto_version=5.2.5
moto_venv="${PERISCOPE_MOTO_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/periscope-moto/venv}"
if [ "$(cat "$moto_venv/.moto-version" 2>/dev/null)" != "$moto_version" ]; then
  say "installing moto $moto_version (local AWS emulation for tests) into $moto_venv"
  python3 -m venv "$moto_venv"
  "$moto_venv/bin/pip" install -q --disable-pip-version-check "moto[server]==$moto_version"
  echo "$moto_version" > "$moto_venv/.moto-version"
fi
