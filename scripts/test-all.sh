#!/usr/bin/env bash
# Runs every test suite of the project: the linters, TypeScript unit tests, the training
# package's tests (pytest), the Helm chart tests and the integration tests
# against a real Kafka broker and schema registry.
#
# Integration tests use KAFKA_BROKERS / SCHEMA_REGISTRY_URL when set; otherwise
# this script starts the local stack (scripts/stack.sh) and stops it again at the
# end if it started it. Prerequisite: scripts/setup.sh (installs everything).
#
# Each suite runs even when an earlier one failed; the exit status is non-zero
# if any failed, and a summary line per suite is printed at the end.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

started_stack=0
cleanup() {
  if [ "$started_stack" = 1 ]; then scripts/stack.sh down || true; fi
}
trap cleanup EXIT

declare -a names=() codes=()
run_suite() { # NAME COMMAND...
  local name=$1; shift
  printf '\n===== %s\n' "$name"
  "$@"
  local rc=$?
  names+=("$name"); codes+=("$rc")
}

run_suite "lint (tsc, eslint, ruff)" bash -c 'npm run --silent lint && .venv/bin/ruff check training && .venv/bin/ruff check --config training/pyproject.toml bench'
run_suite "typescript unit" npm run --silent test:unit

if [ -x .venv/bin/python ]; then
  # .venv links to a virtual environment shared by every checkout (see
  # scripts/setup.sh), whose editable install of cner-train points at the
  # checkout that last ran setup.sh: put this checkout's sources first.
  # (No tests collected is pytest's exit code 5, so a FAIL below.)
  run_suite "python (training package)" env PYTHONPATH="$root/training/src${PYTHONPATH:+:$PYTHONPATH}" \
    .venv/bin/python -m pytest -p no:cacheprovider training/tests
else
  echo "no .venv: run scripts/setup.sh first" >&2
  names+=("python (training package)"); codes+=(1)
fi

run_suite "helm chart" npm run --silent test:helm

if [ -z "${KAFKA_BROKERS:-}" ] || [ -z "${SCHEMA_REGISTRY_URL:-}" ]; then
  if ! scripts/stack.sh status >/dev/null 2>&1; then
    started_stack=1
  fi
  # (not `eval "$(scripts/stack.sh up | ...)"`: that would lose a failed `up`)
  if stack_env=$(scripts/stack.sh up); then
    eval "$(sed 's/^/export /' <<<"$stack_env")"
  fi
fi
# Without both variables the integration tests skip themselves and pass.
if [ -n "${KAFKA_BROKERS:-}" ] && [ -n "${SCHEMA_REGISTRY_URL:-}" ]; then
  run_suite "integration (Kafka + registry)" npm run --silent test:integration
else
  printf '\n===== %s\n' "integration (Kafka + registry)"
  echo "the local stack did not start (see above): the integration tests cannot run" >&2
  names+=("integration (Kafka + registry)"); codes+=(1)
fi

# The benchmark in its smoke form (bench/run.ts --smoke): every part runs once
# on a few fixture texts, and cner and its Python peers must find the same
# entities. Times are printed, never asserted. The Kafka part runs when the
# stack's variables are set (above); the results go to a temporary file.
smoke_out=$(mktemp -d)
run_suite "benchmark (smoke)" npm run --silent bench -- --smoke --out "$smoke_out/bench-smoke.json"
rm -rf "$smoke_out"

printf '\n===== summary\n'
failed=0
for i in "${!names[@]}"; do
  if [ "${codes[$i]}" = 0 ]; then echo "ok    ${names[$i]}"; else echo "FAIL  ${names[$i]} (exit ${codes[$i]})"; failed=1; fi
done
exit "$failed"
