#!/usr/bin/env bash
# `npm run images`: builds the periscope-server, periscope-agent and periscope-shell OCI image
# archives into dist/images/ without a container engine (e2e/images/build.ts; docs/shell-image.md).
# Installs the Debian packages it needs on first use; every step is cached under
# ~/.cache/periscope-images, keyed by its inputs. Arguments: image names (default: all three),
# --no-cache (rebuild the final assembly; base steps stay cached).
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

if [ "${PERISCOPE_IMAGES_SKIP_BUILD:-}" != "1" ]; then
  start=$(date +%s)
  npm run build --silent
  say "npm run build: $(( $(date +%s) - start ))s"
fi
npx tsx e2e/images/build.ts "$@"
for archive in dist/images/*.oci.tar; do
  say "skopeo inspect $(basename "$archive"): $(skopeo inspect --config "oci-archive:$archive" | node -e 'const c=JSON.parse(require("fs").readFileSync(0,"utf8")).config; console.log(JSON.stringify({User:c.User,Entrypoint:c.Entrypoint,Cmd:c.Cmd,WorkingDir:c.WorkingDir}))')"
done
