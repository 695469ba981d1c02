#!/usr/bin/env bash
# The Python environment of the interop test (test/integration/interop.test.ts):
# Confluent's librdkafka-based client with its Avro serializer and schema
# registry client, pinned in test/integration/interop/requirements.txt. It is
# its own small environment, under ~/.cache/cner keyed by the hash of that
# file, so changing it never rebuilds the training environment (PyTorch).
# Created on first use; prints the path of its python on stdout.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
requirements=$root/test/integration/interop/requirements.txt
hash=$(sha256sum "$requirements" | cut -c1-12)
venv="${CNER_INTEROP_VENV:-$HOME/.cache/cner/interop-$hash}"
mkdir -p "$(dirname "$venv")"
(
  if command -v flock >/dev/null 2>&1; then
    flock -w 900 9 || { echo "interop-venv.sh: $venv.lock is still held after 15 minutes" >&2; exit 1; }
  fi
  if [ ! -e "$venv/.complete" ]; then
    python3 -m venv --clear "$venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" >&2
    touch "$venv/.complete"
  fi
) 9>"$venv.lock"
echo "$venv/bin/python"
