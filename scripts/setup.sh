#!/usr/bin/env bash
# Installs everything cner needs on a fresh machine (Node 20 + npm, Python 3.11,
# Java 17 + Maven and Go must already be there):
#   - the Node dependencies (npm ci; onnxruntime-node's CUDA download is skipped by .npmrc)
#     and the TypeScript build,
#   - the training package and its pinned dependencies in a Python virtual environment,
#   - the Kafka broker and schema registry jars (resolved by Maven, see scripts/stack.sh),
#   - helm (and the chart test tools) built with `go install`.
# Idempotent and cached: the virtual environment lives under ~/.cache/cner keyed by
# the hash of training/constraints.txt, and .venv links to it, so a second clone
# (CI) reuses it instead of downloading PyTorch again.
#
# Usage: scripts/setup.sh [--no-python] [--no-helm] [--no-stack]
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

with_python=1 with_helm=1 with_stack=1
for arg in "$@"; do
  case "$arg" in
    --no-python) with_python=0 ;;
    --no-helm) with_helm=0 ;;
    --no-stack) with_stack=0 ;;
    *) echo "setup.sh: unknown option $arg (use --no-python, --no-helm, --no-stack)" >&2; exit 2 ;;
  esac
done

step() { printf '\n== %s\n' "$*" >&2; }

need() {
  command -v "$1" >/dev/null 2>&1 || { echo "setup.sh: $1 is required: $2" >&2; exit 1; }
}
need node "install Node.js 20"
need npm "install npm (comes with Node.js)"

step "Node dependencies and build"
npm ci --no-audit --no-fund
npm run build

if [ "$with_python" = 1 ]; then
  need python3 "install Python 3.11"
  step "Python training package"
  hash=$(cat training/constraints.txt training/pyproject.toml | sha256sum | cut -c1-12)
  venv="${CNER_VENV:-$HOME/.cache/cner/venv-$hash}"
  mkdir -p "$(dirname "$venv")"
  # The environment is shared by every checkout: one pip at a time in it.
  (
    if command -v flock >/dev/null 2>&1; then
      flock -w 3600 9 || { echo "setup.sh: $venv.lock is still held after an hour" >&2; exit 1; }
    fi
    # (re)created when missing or left without pip by an interrupted creation
    if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
      python3 -m venv --clear "$venv"
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
      -c training/constraints.txt -e "training[test,stream]"
  ) 9>"$venv.lock"
  if [ -e .venv ] && [ ! -L .venv ]; then
    echo "setup.sh: .venv exists and is not a link; using it as it is" >&2
  else
    ln -sfn "$venv" .venv
  fi
fi

if [ "$with_stack" = 1 ]; then
  need java "install Java 17"
  need mvn "install Maven"
  step "Kafka and schema registry (resolved from Maven Central)"
  scripts/stack.sh resolve
fi

if [ "$with_helm" = 1 ] && [ -f scripts/helm-tools.sh ]; then
  need go "install Go"
  step "helm and chart tools"
  bash scripts/helm-tools.sh
fi

step "setup done"
