#!/usr/bin/env bash
# Makes sure redis-server is on PATH: installs it with apt-get when we are root
# on Debian/Ubuntu, otherwise fails with the exact command to run.
set -euo pipefail
command -v redis-server >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "redis-server not found: installing it with apt-get" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  command -v redis-server >/dev/null 2>&1 && exit 0
fi
echo "redis-server is required. Install it with: sudo apt-get install -y redis-server" >&2
exit 1
