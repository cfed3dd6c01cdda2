#!/usr/bin/env bash
# npm run demo: the embedded default (a local directory store) archiving and replaying WAL
# between two throwaway PostgreSQL clusters. Does its own setup.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash scripts/setup.sh --postgres
source scripts/node-env.sh
exec node scripts/demo.ts "$@"
