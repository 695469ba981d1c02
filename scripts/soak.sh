#!/usr/bin/env bash
# `npm run soak [-- options]`: the full soak (test/soak/run.ts) against
# KAFKA_BROKERS / SCHEMA_REGISTRY_URL, or the local stack, started if needed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ -z ${KAFKA_BROKERS:-} || -z ${SCHEMA_REGISTRY_URL:-} ]]; then
  scripts/stack.sh up >/dev/null
  eval "$(scripts/stack.sh env)"
fi
npm run --silent build
exec node --import tsx test/soak/run.ts "$@"
