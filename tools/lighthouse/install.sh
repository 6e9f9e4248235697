#!/usr/bin/env bash
# Installs Lighthouse (pinned in package-lock.json) into tools/lighthouse/node_modules, once:
# a stamp holding the lock file's hash skips the install while the lock is unchanged, so the
# tests and CI call this every time at no cost (cache tools/lighthouse/node_modules in CI).
# Needs node >= 18.16 and npm (Debian: apt-get install nodejs npm; .ci/run installs them).
set -euo pipefail
cd "$(dirname "$0")"
want=$(sha256sum package-lock.json | cut -d' ' -f1)
stamp=node_modules/.swiftshot-stamp
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -f node_modules/lighthouse/cli/index.js ]; then
  exit 0
fi
command -v npm >/dev/null || { echo "npm not found (Debian: apt-get install nodejs npm)" >&2; exit 3; }
npm ci --no-audit --no-fund --omit=dev --loglevel=error >&2
echo "$want" > "$stamp"
