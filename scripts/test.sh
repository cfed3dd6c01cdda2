#!/usr/bin/env bash
# npm test entry point. Does its own setup (Node, dependencies, build, PostgreSQL 15),
# then runs a suite with Node's test runner:
#   unit         pure logic, no servers (seconds)
#   contract     the object-store conformance suite against every provider (starts s3rver)
#   integration  real PostgreSQL 15-18 clusters archiving and restoring WAL
#   e2e          the CLI as a process
#   all          typecheck, then every suite above
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
suite="${1:-all}"
shift || true

if [ "$suite" = unit ]; then
  bash scripts/setup.sh
else
  bash scripts/setup.sh --postgres
fi
source scripts/node-env.sh

run() { # $1 = suite folder
  local files
  files=$(find "test/$1" -name '*.test.ts' | sort)
  if [ -z "$files" ]; then echo "no tests in test/$1" >&2; return 0; fi
  # shellcheck disable=SC2086
  node --test --test-reporter=spec --test-timeout=600000 "$@" $files
}

case "$suite" in
  unit|contract|integration|e2e) run "$suite" "$@" ;;
  all)
    echo "== typecheck" && tsc --noEmit -p .
    echo "== all suites"
    files=$(find test/unit test/contract test/integration test/e2e -name '*.test.ts' | sort)
    # Two test files at a time: most integration time is spent waiting on PostgreSQL and the
    # store servers, not on CPU, and every test picks its own free ports and directories.
    # CLOUDBARMAN_TEST_CONCURRENCY=1 runs them one by one (for bisecting an interaction).
    # shellcheck disable=SC2086
    node --test --test-reporter=spec --test-timeout=600000 \
      --test-concurrency="${CLOUDBARMAN_TEST_CONCURRENCY:-2}" "$@" $files
    ;;
  *) echo "unknown suite: $suite (unit|contract|integration|e2e|all)" >&2; exit 3 ;;
esac
