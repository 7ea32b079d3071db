#!/usr/bin/env bash
# Usage: ensure-installed.sh COMMAND DEBIAN_PACKAGE
# Makes sure COMMAND is on PATH: installs DEBIAN_PACKAGE with apt-get when we
# are root on Debian/Ubuntu, otherwise fails with the exact command to run.
set -euo pipefail
cmd=${1:?command}; pkg=${2:?package}
command -v "$cmd" >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "$cmd not found: installing $pkg with apt-get" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
  command -v "$cmd" >/dev/null 2>&1 && exit 0
fi
echo "$cmd is required. Install it with: sudo apt-get install -y $pkg" >&2
exit 1
