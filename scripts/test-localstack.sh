#!/usr/bin/env bash
# npm run test:localstack: the conformance suite and the provider integration tests against
# LocalStack (S3), Azurite and fake-gcs-server under Docker (localstack/docker-compose.yml).
# Needs a running Docker engine with compose v2.17 or later; the project's CI has none and uses
# s3rver, azurite from npm and test/servers/gcs instead (npm test).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
compose=(docker compose -f localstack/docker-compose.yml)

if ! docker info >/dev/null 2>&1; then
  echo "test:localstack: no Docker engine answers (docker info failed); start Docker first" >&2
  exit 3
fi
bash scripts/setup.sh --postgres

cleanup() { "${compose[@]}" down --volumes --remove-orphans >/dev/null 2>&1 || true; }
trap cleanup EXIT
"${compose[@]}" up -d

# LocalStack runs its ready.d hooks (the bucket) after it answers; wait for both, bounded.
for attempt in $(seq 1 90); do
  if curl -fs http://127.0.0.1:4566/_localstack/init/ready | grep -q '"completed": *true'; then break; fi
  if [ "$attempt" = 90 ]; then echo "test:localstack: LocalStack not ready after 180 s" >&2; exit 2; fi
  sleep 2
done
# The one-shot container that creates the Azurite container must have exited 0.
status="$("${compose[@]}" wait azurite-init)"
if [ "$status" != "0" ]; then echo "test:localstack: azurite-init exited $status" >&2; exit 2; fi
for attempt in $(seq 1 30); do
  if curl -fs http://127.0.0.1:4443/storage/v1/b/cloudbarman-it >/dev/null; then break; fi
  if [ "$attempt" = 30 ]; then echo "test:localstack: fake-gcs-server has no bucket cloudbarman-it after 60 s" >&2; exit 2; fi
  sleep 2
done

export CLOUDBARMAN_TEST_S3_ENDPOINT=http://127.0.0.1:4566
export CLOUDBARMAN_TEST_AZURE_ENDPOINT=http://127.0.0.1:10000/devstoreaccount1
export CLOUDBARMAN_TEST_GCS_ENDPOINT=http://127.0.0.1:4443
source scripts/node-env.sh
node --test --test-concurrency=1 \
  localstack/contract.test.ts \
  test/integration/wal-archive-restore.test.ts \
  test/integration/pitr.test.ts
