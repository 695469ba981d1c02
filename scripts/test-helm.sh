#!/usr/bin/env bash
# Checks the Helm chart (helm/cner) and the Dockerfile:
#   1. installs the tools into .cache/ (scripts/helm-tools.sh; fast when already built)
#   2. hadolint on the Dockerfile (when the hadolint wheel exists for this platform)
#   3. for every helm/cner/ci/*-values.yaml: `helm lint --strict`, `helm template`,
#      and kubeconform (strict, offline Kubernetes schemas) on the rendered objects
#   4. the Go tests in test/helm over `helm template` output: probes, security
#      context, GPU limits, autoscaler ownership and exclusivity, secretKeyRefs,
#      NOTES.txt selectors, strict schema, @param/schema/README coverage
#
# Usage: bash scripts/test-helm.sh                 run everything
#        bash scripts/test-helm.sh --update-readme regenerate the README parameter table
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHART="$ROOT/helm/cner"
TESTS="$ROOT/test/helm"
cd "$ROOT"

tools_env="$(bash scripts/helm-tools.sh)" # an assignment, so that a failure stops the script
eval "$tools_env"
export HELM CNER_CHART="$CHART"
# test/helm/go.sum is authoritative: never rewrite it during a test run.
export GOFLAGS="${GOFLAGS:-} -mod=readonly"

if [[ "${1:-}" == "--update-readme" ]]; then
  (cd "$TESTS" && go run ./cmd/helm-readme -chart "$CHART")
  exit 0
fi

failures=0
fail() { printf 'FAIL: %s\n' "$*" >&2; failures=$((failures + 1)); }
step() { printf '\n== %s\n' "$*"; }

step "hadolint Dockerfile training/Dockerfile"
if [[ -x "$HADOLINT" ]]; then
  for dockerfile in Dockerfile training/Dockerfile; do
    if "$HADOLINT" --failure-threshold warning "$dockerfile"; then
      echo "$dockerfile: no findings"
    else
      fail "hadolint $dockerfile"
    fi
  done
else
  echo "skipped: no hadolint binary for this platform"
fi

RENDER_DIR="$ROOT/.cache/helm-rendered"
rm -rf "$RENDER_DIR"
mkdir -p "$RENDER_DIR"
KUBE_VERSION="$KUBE_SCHEMA_VERSION"

for values in "$CHART"/ci/*-values.yaml; do
  name="$(basename "$values" -values.yaml)"
  step "scenario $name"
  if "$HELM" lint --strict --kube-version "$KUBE_VERSION" "$CHART" -f "$values" >"$RENDER_DIR/$name.lint" 2>&1; then
    echo "helm lint --strict: ok"
  else
    cat "$RENDER_DIR/$name.lint" >&2
    fail "helm lint $name"
    continue
  fi
  if ! "$HELM" template cner "$CHART" --namespace ner --kube-version "$KUBE_VERSION" -f "$values" >"$RENDER_DIR/$name.yaml"; then
    fail "helm template $name"
    continue
  fi
  echo "helm template: $(grep -c '^kind:' "$RENDER_DIR/$name.yaml") objects"
  if [[ -x "$KUBECONFORM" && -d "$KUBE_SCHEMA_ROOT/v$KUBE_VERSION-standalone-strict" ]]; then
    # CRD kinds (KEDA, Prometheus Operator) have no schema offline; the Go tests check them.
    "$KUBECONFORM" -strict -summary -kubernetes-version "$KUBE_VERSION" \
      -schema-location "$KUBE_SCHEMA_ROOT/" \
      -skip ScaledObject,TriggerAuthentication,ServiceMonitor \
      "$RENDER_DIR/$name.yaml" || fail "kubeconform $name"
  else
    echo "kubeconform skipped: no binary or no Kubernetes schemas"
  fi
done

step "go test ./... (test/helm)"
(cd "$TESTS" && go test -count=1 ./...) || fail "go test"

echo
if ((failures > 0)); then
  echo "test-helm: $failures failure(s)"
  exit 1
fi
echo "test-helm: all checks passed"
