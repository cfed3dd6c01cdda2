#!/usr/bin/env bash
# Installs Debian's postgresql-15 (server and client tools) when it is missing.
# Only root can install; anyone else gets a clear message. No default cluster is created.
set -euo pipefail
if [ -x /usr/lib/postgresql/15/bin/postgres ] && [ -x /usr/lib/postgresql/15/bin/initdb ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "cloudbarman setup: PostgreSQL 15 is missing; run as root, or apt-get install postgresql-15" >&2
  exit 1
fi
echo "cloudbarman setup: installing Debian's postgresql-15" >&2
mkdir -p /etc/postgresql-common/createcluster.d
echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/cloudbarman-no-main.conf
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends postgresql-15 postgresql-client-15 >/dev/null
