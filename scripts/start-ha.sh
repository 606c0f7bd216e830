#!/usr/bin/env bash
# `npm run start:ha`: like `npm start`, but highly available: Redis, PostgreSQL, three server
# replicas behind HAProxy, the agent's tunnel through HAProxy (e2e/ha/start-ha.ts). `npm start`
# is unchanged (one process, SQLite, in-memory state).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
echo "[start:ha] building" >&2
npm run build --silent
# Its own session: Ctrl-C reaches only the stack's runner, which stops the agent, HAProxy and the
# replicas before Redis, PostgreSQL and the control plane (a Ctrl-C to the whole process group
# would stop the stores under the running replicas).
setsid node --enable-source-maps node_modules/.bin/tsx e2e/ha/start-ha.ts "$@" &
pid=$!
trap 'kill -INT "$pid" 2>/dev/null || true' INT TERM
status=0
while :; do
  if wait "$pid"; then status=0; else status=$?; fi
  kill -0 "$pid" 2>/dev/null || break
done
exit "$status"
