#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian bookworm machine: Debian packages,
# npm dependencies, and the cached Go builds of the local control plane. Safe to run repeatedly;
# each step is skipped when already done. With --images (what `npm test` passes) it also makes
# the slow, cached inputs of the OCI images (`npm run images -- --prepare`: Node.js, production
# dependencies, Debian bases; about 15 min on a fresh machine, then seconds), so the test run
# only assembles the images; `npm start` does not need them and does not pass it.
#
# Each step prints one line when it starts (with its usual cold duration) and one when it ends,
# or one line saying it is cached, then a summary (scripts/lib/progress.sh). The tools' own output
# (apt-get, npm, pip) goes to ~/.cache/periscope-setup/setup.log; a failed step prints its last
# lines and what to do. PERISCOPE_SETUP_DRY_RUN=1 only checks and prints: nothing is installed or
# built.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

with_images=0
for arg in "$@"; do
  case "$arg" in
    --images) with_images=1 ;;
    *) echo "usage: scripts/setup.sh [--images]" >&2; exit 64 ;;
  esac
done

setup_cache="${XDG_CACHE_HOME:-$HOME/.cache}/periscope-setup"
PROGRESS_PREFIX=setup
PROGRESS_LOG="$setup_cache/setup.log"
PROGRESS_DURATIONS="$setup_cache/durations"
PROGRESS_DRY_RUN="${PERISCOPE_SETUP_DRY_RUN:-}"
# shellcheck source-path=SCRIPTDIR source=lib/progress.sh
. scripts/lib/progress.sh

# Debian packages: bubblewrap sandboxes pod processes, chromium runs browser tests, openssl makes
# the local cluster's certificates, util-linux provides nsenter/setpriv, nano is the shell image's
# editor (tests open it), python3 drives terminals in tests (python3-venv: the moto venv below), gcc and libc6-dev build the shell
# image's audit wrapper (C, statically linked), golang is the fallback Go. redis-server, postgresql
# and haproxy back the multi-replica mode (tests start their own throwaway instances on loopback;
# `npm start` never starts them).
# Usual durations: `apt-get update` 7 s here with fresh lists; the whole list on a bare bookworm is
# ≈ 330 packages, 420 MB (chromium's 81 MB came in 7 s here), then dpkg (8-12 s per batch here).
need=()
for pkg in bubblewrap chromium openssl util-linux ca-certificates nano python3 python3-venv gcc libc6-dev redis-server postgresql haproxy; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ! command -v go >/dev/null 2>&1; then need+=(golang-go); fi
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  apt_hint="Check the network and the Debian mirror (/etc/apt/sources.list*), then rerun scripts/setup.sh; as a non-root user it needs sudo."
  # shellcheck disable=SC2086 # $SUDO is empty as root
  progress_step "apt-get update" "~10-30 s" "$apt_hint" $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  progress_step "Debian packages (${need[*]})" "~2-4 min on a bare machine (≈ 420 MB), seconds for a few" "$apt_hint" \
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
else
  progress_cached "Debian packages" "all installed"
fi

# npm dependencies, from the lock file; reinstalled only when the lock changed.
stamp=node_modules/.periscope-lock-hash
want=$(sha256sum package-lock.json | cut -c1-64)
npm_install() {
  # Native modules (better-sqlite3, bufferutil) compile against Node's headers. Without network
  # access to nodejs.org, node-gyp must use the headers installed with Node itself.
  local node_prefix
  node_prefix=$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")
  if [ -z "${npm_config_nodedir:-}" ] && [ -f "$node_prefix/include/node/node.h" ]; then
    export npm_config_nodedir="$node_prefix"
  fi
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" >"$stamp"
}
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  # docs/benchmarks.md: 68 s with an empty npm cache; 2 min in a first setup here.
  progress_step "npm dependencies (npm ci)" "~1-2 min cold, native modules compile" \
    "Check the network and the npm registry (npm config get registry), then rerun scripts/setup.sh." npm_install
else
  progress_cached "npm dependencies" "node_modules matches package-lock.json"
fi

# build.sh and images.sh print their own step lines; their stdout goes to this file.
own_out=$(mktemp)
trap 'rm -f "$own_out"' EXIT

# Go builds of kube-apiserver, kubectl, etcd, helm and the process-backed node (cached by their
# inputs; a cold build prints one [build] line per step: 10-25 min on 2 cores, once).
progress_own "control plane binaries" \
  "The [build] lines above name the failed step and its log; fix that and rerun scripts/setup.sh (finished steps are kept)." \
  "$own_out" bash e2e/k8s/build.sh

# The image build's slow inputs, for the tests that run the images (e2e/images, e2e/deploy).
# scripts/images.sh installs mmdebstrap, skopeo and umoci on first use, and prints its own steps.
if [ "$with_images" = 1 ]; then
  progress_own "image build inputs" \
    "The [images] lines above name the failed step; fix that and rerun scripts/setup.sh --images (finished steps are kept)." \
    "$own_out" bash scripts/images.sh --prepare
fi

# The local AWS of the eks backend's tests (e2e/k8s/aws): moto from PyPI in its own venv, outside
# the repository; reinstalled only when the pinned version changes. A fresh venv with an empty pip
# cache took 1m52s here (38 s of CPU) on 2 busy cores.
moto_version=5.2.5
moto_venv="${PERISCOPE_MOTO_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/periscope-moto/venv}"
install_moto() {
  python3 -m venv "$moto_venv"
  "$moto_venv/bin/pip" install -q --disable-pip-version-check "moto[server]==$moto_version"
  echo "$moto_version" >"$moto_venv/.moto-version"
}
if [ "$(cat "$moto_venv/.moto-version" 2>/dev/null)" != "$moto_version" ]; then
  progress_step "moto $moto_version into $moto_venv (local AWS for tests, from PyPI)" "~1-2 min cold" \
    "Check the network and PyPI (pip config list), then rerun scripts/setup.sh; or delete $moto_venv first." install_moto
else
  progress_cached "moto $moto_version" "$moto_venv"
fi

progress_summary summary
