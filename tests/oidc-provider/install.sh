#!/usr/bin/env bash
# Idempotent install of the test OIDC provider's dependencies (oidc-provider pinned in package-lock.json).
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "install.sh: node and npm are required (Node.js >= 18; tested with v20). Install them with:" >&2
  echo "  apt-get install -y nodejs npm" >&2
  exit 1
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 18 ]; then
  echo "install.sh: Node.js >= 18 is required for oidc-provider 8.x, found $(node --version)" >&2
  exit 1
fi

# reinstall when node_modules is missing or older than the lockfile
if [ ! -d node_modules/oidc-provider ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
echo "install.sh: ok (node $(node --version), oidc-provider $(node -p 'require("./node_modules/oidc-provider/package.json").version'))"
