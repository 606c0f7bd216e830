#!/bin/sh
# Compiles periscope-audit-exec (one C file, libc only) to the given path. The image build
# (docker/Dockerfile.shell), `npm run build -w @periscope/shell` and the tests all use this script.
#   sh apps/shell/src/audit-exec/build.sh <output-file>
# CC defaults to cc. Statically linked: the binary needs nothing from the image at run time.
set -eu
out="$1"
src="$(dirname "$0")/periscope-audit-exec.c"
mkdir -p "$(dirname "$out")"
${CC:-cc} -std=c11 -O2 -Wall -Wextra -Werror -static -s -o "$out.tmp.$$" "$src"
chmod 0755 "$out.tmp.$$"
mv -f "$out.tmp.$$" "$out"
