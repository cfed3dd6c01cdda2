#!/bin/bash
# LocalStack ready hook: the bucket the suites write to.
set -euo pipefail
awslocal s3 mb s3://cloudbarman-it
