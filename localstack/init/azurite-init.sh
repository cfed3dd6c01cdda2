#!/bin/bash
# Creates the test container in Azurite (the well-known development account), retrying until Azurite answers.
set -euo pipefail
conn="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=http://azurite:10000/devstoreaccount1;"
for attempt in $(seq 1 30); do
  if az storage container create --name cloudbarman-it --connection-string "$conn" --output none 2>/dev/null; then
    echo "azurite-init: container cloudbarman-it ready"
    exit 0
  fi
  sleep 1
done
echo "azurite-init: Azurite did not answer within 30 attempts" >&2
exit 1
