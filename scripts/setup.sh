#!/usr/bin/env bash
# Everything a fresh clone needs before ./bin/cloudbarman runs: Node, dependencies, build.
# With --postgres it also installs Debian's postgresql-15 when missing (as root).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
source scripts/node-env.sh

# Dependencies: npm ci when node_modules does not match package-lock.json.
stamp="node_modules/.cloudbarman-lock.sha256"
want="$(sha256sum package-lock.json | cut -d' ' -f1)-$(node -p process.version)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "cloudbarman setup: npm ci (node $(node -p process.version))" >&2
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi

node scripts/build.mjs

if [ "${1:-}" = "--postgres" ]; then
  bash scripts/ensure-postgres.sh
fi
