#!/usr/bin/env bash
# Usage: ensure-installed.sh COMMANDS DEBIAN_PACKAGE
# COMMANDS is a command name, or several separated by '|' in order of
# preference (alternatives: 'chromium|chromium-browser|google-chrome').
# Succeeds when one of them is on PATH and runs: `COMMAND --version` exits 0
# (Ubuntu's chromium-browser deb is a shim for a snap, and fails that way
# when the snap is missing). Otherwise installs DEBIAN_PACKAGE with apt-get
# when we are root on Debian/Ubuntu, or fails with the exact command to run.
# The e2e browser suite looks for the same names in the same order.
set -euo pipefail
cmds=${1:?commands}; pkg=${2:?package}
IFS='|' read -ra alts <<<"$cmds"
usable() {
  local c p
  for c in "${alts[@]}"; do
    p=$(command -v "$c" 2>/dev/null) || continue
    if "$p" --version >/dev/null 2>&1; then
      return 0
    fi
    echo "$c is on PATH ($p) but \`$c --version\` fails: not usable" >&2
  done
  return 1
}
usable && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "none of ${alts[*]} usable: installing $pkg with apt-get" >&2
  if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null; then
    usable && exit 0
  fi
fi
echo "${alts[*]}: one is required. Install it with: sudo apt-get install -y $pkg" >&2
exit 1
