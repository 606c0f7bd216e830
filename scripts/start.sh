#!/usr/bin/env bash
# `npm start`: installs what is needed, builds, and runs the whole system locally.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
echo "[start] building" >&2
npm run build --silent
exec node --enable-source-maps node_modules/.bin/tsx e2e/system/start-system.ts "$@"
