#!/usr/bin/env bash
# Runs a command with the project's Node first on PATH: scripts/with-node.sh node file.mjs
set -euo pipefail
source "$(dirname "$0")/node-env.sh"
exec "$@"
