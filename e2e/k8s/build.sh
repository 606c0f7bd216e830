#!/usr/bin/env bash
# Builds the local control plane's binaries from the Go module proxy and caches them outside the
# repository, keyed by versions and a hash of the sources that produce them. A second run with
# the same inputs rebuilds nothing. Prints the cache directory on the last line of stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
K8S_VERSION=v1.36.3
K8S_MINOR=36
HELM_VERSION=v3.22.0

hash_of() { cat "$@" | sha256sum | cut -c1-16; }
tools_hash=$(hash_of "$here/tools/go.mod" "$here/tools/go.sum" "$here/build.sh")
node_hash=$(cd "$here/node" && find . -type f \( -name '*.go' -o -name 'go.mod' -o -name 'go.sum' \) -print0 | sort -z | xargs -0 cat | sha256sum | cut -c1-16)

cache_root="${PERISCOPE_K8SBIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/periscope-k8sbin}"
tools_dir="$cache_root/k8s-$K8S_VERSION-helm-$HELM_VERSION-$tools_hash"
node_dir="$cache_root/node-$node_hash"
bin_dir="$cache_root/current-$tools_hash-$node_hash"

log() { printf '[k8s-build] %s\n' "$*" >&2; }

# One build at a time per cache: parallel test workers may all ask for the binaries at once.
mkdir -p "$cache_root"
exec 9>"$cache_root/.lock"
flock 9

if [ ! -f "$tools_dir/.complete" ]; then
  log "building kube-apiserver, kubectl, etcd $K8S_VERSION and helm $HELM_VERSION (cold build: 10-25 min on 2 cores)"
  start=$(date +%s)
  rm -rf "$tools_dir.tmp" && mkdir -p "$tools_dir.tmp"
  ldf="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldf="$ldf -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$K8S_MINOR -X $p.gitTreeState=clean"
  done
  (
    cd "$here/tools"
    log "  kube-apiserver + kubectl"
    CGO_ENABLED=0 go build -trimpath -ldflags "$ldf" -o "$tools_dir.tmp/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl
    log "  etcd"
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tools_dir.tmp/etcd" go.etcd.io/etcd/server/v3
  )
  log "  helm"
  hv="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$K8S_MINOR"
  GOBIN="$tools_dir.tmp" CGO_ENABLED=0 go install -trimpath -ldflags "$hv" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  echo "k8s=$K8S_VERSION helm=$HELM_VERSION built=$(date -u +%FT%TZ) seconds=$(( $(date +%s) - start ))" > "$tools_dir.tmp/.complete"
  rm -rf "$tools_dir" && mv "$tools_dir.tmp" "$tools_dir"
  log "  done in $(( $(date +%s) - start ))s"
fi

if [ ! -f "$node_dir/.complete" ]; then
  log "building the process-backed node (periscope-node)"
  start=$(date +%s)
  rm -rf "$node_dir.tmp" && mkdir -p "$node_dir.tmp"
  (cd "$here/node" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$node_dir.tmp/periscope-node" .)
  echo "built=$(date -u +%FT%TZ) seconds=$(( $(date +%s) - start ))" > "$node_dir.tmp/.complete"
  rm -rf "$node_dir" && mv "$node_dir.tmp" "$node_dir"
fi

# One directory with every binary, so callers need a single path.
if [ ! -d "$bin_dir" ]; then
  mkdir -p "$bin_dir.tmp"
  for f in kube-apiserver kubectl etcd helm; do ln -sf "$tools_dir/$f" "$bin_dir.tmp/$f"; done
  ln -sf "$node_dir/periscope-node" "$bin_dir.tmp/periscope-node"
  rm -rf "$bin_dir" && mv "$bin_dir.tmp" "$bin_dir"
fi
echo "$bin_dir"
