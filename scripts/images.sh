#!/usr/bin/env bash
# `npm run images`: builds the periscope-server, periscope-agent and periscope-shell OCI image
# archives into dist/images/ without a container engine (e2e/images/build.ts; docs/shell-image.md).
# Installs the Debian packages it needs on first use; every step is cached under
# ~/.cache/periscope-images, keyed by its inputs, and prints one line when it starts (with its usual
# duration) and one when it ends, then a summary. Arguments: image names (default: all three),
# --no-cache (rebuild the final assembly; base steps stay cached), --prepare (only the steps that
# do not need the build output: Node.js, production dependencies, Debian bases, kubectl/helm;
# scripts/setup.sh --images runs this so a test run only assembles the images).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '[images] %s\n' "$*" >&2; }

# mmdebstrap makes the Debian root file system, skopeo reads the archives back (npm run images
# checks each with `skopeo inspect`), bubblewrap runs the Dockerfiles' build checks in the image.
need=()
for pkg in mmdebstrap skopeo umoci bubblewrap; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  say "installing Debian packages: ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

prepare=0
for a in "$@"; do [ "$a" = "--prepare" ] && prepare=1; done
if [ "$prepare" = 0 ] && [ "${PERISCOPE_IMAGES_SKIP_BUILD:-}" != "1" ]; then
  # Its output (bundler warnings) goes to a log, shown when it fails.
  build_log="${PERISCOPE_IMAGES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/periscope-images}/npm-run-build.log"
  mkdir -p "$(dirname "$build_log")"
  say "npm run build … (usually ~1–3 min)"
  start=$(date +%s)
  if ! npm run build --silent >"$build_log" 2>&1; then
    say "npm run build FAILED after $(( $(date +%s) - start ))s; its output: $build_log (last lines below)"
    tail -n 30 "$build_log" | sed 's/^/[images]   /' >&2
    exit 1
  fi
  say "npm run build done in $(( $(date +%s) - start ))s"
fi
npx tsx e2e/images/build.ts "$@"
[ "$prepare" = 1 ] && exit 0
for archive in dist/images/*.oci.tar; do
  say "skopeo inspect $(basename "$archive"): $(skopeo inspect --config "oci-archive:$archive" | node -e 'const c=JSON.parse(require("fs").readFileSync(0,"utf8")).config; console.log(JSON.stringify({User:c.User,Entrypoint:c.Entrypoint,Cmd:c.Cmd,WorkingDir:c.WorkingDir}))')"
done
