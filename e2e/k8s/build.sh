#!/usr/bin/env bash
# Builds the local control plane's binaries (kube-apiserver, kubectl, etcd, helm and the
# process-backed node) from the Go module proxy and caches them outside the repository. The cache
# key is what determines the binaries: the pinned versions and flags of build-inputs.env, the Go
# version, tools/go.mod, go.sum and tools.go, and the node module's sources (Go and the C of its
# pod-ip shim, with the gcc version). Not this script's
# text: edit messages or progress here freely, nothing rebuilds. A second run with the same inputs
# builds nothing and prints nothing on stderr.
#
# Each step prints one line when it starts (with its usual cold duration) and one when it ends;
# the Go tool's own output (`go: downloading …`) goes to a log file under the cache, whose path
# is printed when a step fails. Prints the binaries' directory on the last line of stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=build-inputs.env
. "$here/build-inputs.env"

hash_values() { printf '%s\n' "$@" | sha256sum | cut -c1-16; }
hash_files() { cat "$@" | sha256sum | cut -c1-16; }
go_id=$(go env GOVERSION GOOS GOARCH | tr '\n' ' ')
tools_hash=$(hash_values "$go_id" "$BUILD_SCHEMA" "$K8S_VERSION" "$HELM_VERSION" "$CGO_ENABLED" "$GO_BUILD_FLAGS" \
  "$K8S_LDFLAGS" "$ETCD_LDFLAGS" "$HELM_LDFLAGS" \
  "$(hash_files "$here/tools/go.mod" "$here/tools/go.sum" "$here/tools/tools.go")")
node_src=$(cd "$here/node" && find . -type f \( -name '*.go' -o -name 'go.mod' -o -name 'go.sum' -o -name '*.c' \) -print0 | sort -z | xargs -0 cat | sha256sum | cut -c1-16)
cc_id=$(gcc -dumpfullversion -dumpmachine 2>/dev/null | tr '\n' ' ' || true)
node_hash=$(hash_values "$go_id" "$BUILD_SCHEMA" "$CGO_ENABLED" "$GO_BUILD_FLAGS" "$NODE_LDFLAGS" "$node_src" "$cc_id" "$SHIM_CFLAGS")

cache_root="${PERISCOPE_K8SBIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/periscope-k8sbin}"
tools_dir="$cache_root/k8s-$K8S_VERSION-helm-$HELM_VERSION-$tools_hash"
node_dir="$cache_root/node-$node_hash"
bin_dir="$cache_root/current-$tools_hash-$node_hash"
log_file="$cache_root/build.log"

say() { printf '[build] %s\n' "$*" >&2; }
dur() { local s=$1; if [ "$s" -ge 60 ]; then printf '%dm%02ds' $((s / 60)) $((s % 60)); else printf '%ds' "$s"; fi; }

# Usual cold durations (empty Go build cache, 2 cores, little else running; docs/benchmarks.md:
# 6.5-8 min for the first four, 2.5-4 min for the node). The last duration on this machine is
# kept under $cache_root/durations/ and shown too.
declare -A USUAL=(
  [kube-apiserver]="~5 min" [kubectl]="~1 min" [etcd]="~1 min" [helm]="~1.5 min" [periscope-node]="~3 min"
  [pod-ip-shim]="~1 s"
)
steps_built=0
steps_cached=0
started=$(date +%s)

# step NAME OUT_DIR COMMAND…: runs COMMAND (its output into the log) unless OUT_DIR/.NAME.done exists.
step() {
  local name=$1 out=$2
  shift 2
  if [ -f "$out/.$name.done" ]; then steps_cached=$((steps_cached + 1)); return; fi
  local last="" t0
  [ -f "$cache_root/durations/$name" ] && last="; last build here $(dur "$(cat "$cache_root/durations/$name")")"
  say "$name … (usually ${USUAL[$name]} cold, longer on a busy machine; about a minute or less with a warm Go cache$last)"
  t0=$(date +%s)
  printf '\n== %s %s: %s\n' "$(date -u +%FT%TZ)" "$name" "$*" >>"$log_file"
  if ! "$@" >>"$log_file" 2>&1; then
    say "$name FAILED after $(dur $(($(date +%s) - t0))); the Go tool's output: $log_file (last lines below)"
    tail -n 25 "$log_file" | sed 's/^/[build]   /' >&2
    exit 1
  fi
  local secs=$(($(date +%s) - t0))
  mkdir -p "$cache_root/durations" && echo "$secs" >"$cache_root/durations/$name"
  : >"$out/.$name.done"
  steps_built=$((steps_built + 1))
  say "$name done in $(dur "$secs")"
}

# One build at a time per cache: parallel test workers may all ask for the binaries at once.
mkdir -p "$cache_root"
exec 9>"$cache_root/.lock"
if ! flock -n 9; then
  say "another build of the control plane binaries is running (lock $cache_root/.lock); waiting for it"
  flock 9
fi

export CGO_ENABLED
# The log holds the Go tool's output of this run's build only.
if [ ! -f "$tools_dir/.complete" ] || [ ! -f "$node_dir/.complete" ]; then : >"$log_file"; fi
if [ ! -f "$tools_dir/.complete" ]; then
  say "building kube-apiserver, kubectl, etcd (tools/go.mod) $K8S_VERSION and helm $HELM_VERSION into $tools_dir"
  # A failed or interrupted build resumes: finished steps are kept in the .tmp directory.
  mkdir -p "$tools_dir.tmp"
  # shellcheck disable=SC2086 # GO_BUILD_FLAGS is a list of flags
  (
    cd "$here/tools"
    steps_built=0 steps_cached=0 # counted here, added below
    step kube-apiserver "$tools_dir.tmp" go build $GO_BUILD_FLAGS -ldflags "$K8S_LDFLAGS" -o "$tools_dir.tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
    step kubectl "$tools_dir.tmp" go build $GO_BUILD_FLAGS -ldflags "$K8S_LDFLAGS" -o "$tools_dir.tmp/kubectl" k8s.io/kubernetes/cmd/kubectl
    step etcd "$tools_dir.tmp" go build $GO_BUILD_FLAGS -ldflags "$ETCD_LDFLAGS" -o "$tools_dir.tmp/etcd" go.etcd.io/etcd/server/v3
    step helm "$tools_dir.tmp" env GOBIN="$tools_dir.tmp" go install $GO_BUILD_FLAGS -ldflags "$HELM_LDFLAGS" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
    echo "$steps_built $steps_cached" >"$tools_dir.tmp/.counts"
  )
  read -r b c <"$tools_dir.tmp/.counts" && rm -f "$tools_dir.tmp/.counts"
  steps_built=$((steps_built + b)) steps_cached=$((steps_cached + c))
  echo "k8s=$K8S_VERSION helm=$HELM_VERSION $go_id built=$(date -u +%FT%TZ) seconds=$(($(date +%s) - started))" >"$tools_dir.tmp/.complete"
  rm -rf "$tools_dir" && mv "$tools_dir.tmp" "$tools_dir"
else
  steps_cached=$((steps_cached + 4))
fi

if [ ! -f "$node_dir/.complete" ]; then
  t_node=$(date +%s)
  mkdir -p "$node_dir.tmp"
  # shellcheck disable=SC2086
  (
    cd "$here/node"
    steps_built=0 steps_cached=0 # counted here, added below
    step periscope-node "$node_dir.tmp" go build $GO_BUILD_FLAGS -ldflags "$NODE_LDFLAGS" -o "$node_dir.tmp/periscope-node" .
    # The LD_PRELOAD shim that gives each pod its own loopback address (node/podaddr.go); the
    # node finds it next to its binary.
    if [ -z "$cc_id" ]; then
      say "gcc not found: it builds the node's pod-ip shim (node/shim/pod-ip.c); scripts/setup.sh installs it (Debian package gcc)"
      exit 1
    fi
    step pod-ip-shim "$node_dir.tmp" gcc $SHIM_CFLAGS -o "$node_dir.tmp/periscope-pod-ip.so" shim/pod-ip.c
    echo "$steps_built $steps_cached" >"$node_dir.tmp/.counts"
  )
  read -r b c <"$node_dir.tmp/.counts" && rm -f "$node_dir.tmp/.counts"
  steps_built=$((steps_built + b)) steps_cached=$((steps_cached + c))
  echo "$go_id built=$(date -u +%FT%TZ) seconds=$(($(date +%s) - t_node))" >"$node_dir.tmp/.complete"
  rm -rf "$node_dir" && mv "$node_dir.tmp" "$node_dir"
else
  steps_cached=$((steps_cached + 2))
fi

# One directory with every binary, so callers need a single path.
if [ ! -d "$bin_dir" ]; then
  mkdir -p "$bin_dir.tmp"
  for f in kube-apiserver kubectl etcd helm; do ln -sf "$tools_dir/$f" "$bin_dir.tmp/$f"; done
  ln -sf "$node_dir/periscope-node" "$bin_dir.tmp/periscope-node"
  ln -sf "$node_dir/periscope-pod-ip.so" "$bin_dir.tmp/periscope-pod-ip.so"
  rm -rf "$bin_dir" && mv "$bin_dir.tmp" "$bin_dir"
fi
if [ "$steps_built" -gt 0 ]; then
  say "control plane binaries: $((steps_built + steps_cached)) steps, $steps_built built, $steps_cached cached, in $(dur $(($(date +%s) - started))) → $bin_dir (Go output: $log_file)"
fi
echo "$bin_dir"
