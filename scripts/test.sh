#!/usr/bin/env bash
# `npm test`: installs what is needed, then runs every check and test layer. Exits non-zero on
# the first failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export NX_DAEMON=false NX_NO_CLOUD=true

step() { printf '\n[test] == %s ==\n' "$*" >&2; }

# setup --images also makes the images' slow inputs (cold: ~15 min once), so the tests only assemble them.
step "setup"; bash scripts/setup.sh --images
step "project graph"; npx nx show projects >/dev/null
step "typecheck"; npx tsc -b tsconfig.build.json && npx tsc -p apps/web/tsconfig.json && npx tsc -p e2e/tsconfig.json && npx tsc -p libs/protocol/tsconfig.spec.json
step "lint"; npx eslint --max-warnings=0 .
step "format"; npx prettier --check . >/dev/null || { npx prettier --list-different .; echo "run: npm run format" >&2; exit 1; }
step "go vet + go test (node)"; (cd e2e/k8s/node && go vet ./... && go test ./...)
step "build"; npm run build --silent
step "tests (unit + integration against the local control plane)"; npx vitest run "$@"
