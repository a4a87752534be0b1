#!/usr/bin/env bash
# Builds the Pulumi Kubernetes resource provider plugin from Go modules (issue 5's stretch) and
# installs it into PULUMI_HOME, so @pulumi/kubernetes objects can be rendered to YAML without a
# cluster (provider option `renderYamlToDirectory`). Opt-in, not part of `npm ci`: see README.md.
#   bash tools/pulumi-kubernetes/build.sh [PULUMI_HOME]
set -euo pipefail
cd "$(dirname "$0")"
export GOFLAGS=-mod=readonly CGO_ENABLED=0 GOTOOLCHAIN=local
ROOT=$(cd ../.. && pwd)
# Download first: on a cold module cache `go list -m -f '{{.Dir}}'` prints nothing.
go mod download
PV=$(go list -m -f '{{.Version}}' github.com/pulumi/pulumi-kubernetes/provider/v4)
SRC=$(go list -m -f '{{.Dir}}' github.com/pulumi/pulumi-kubernetes/provider/v4)/cmd/pulumi-resource-kubernetes
NPM_VERSION=$(node -p 'require("../../node_modules/@pulumi/kubernetes/package.json").version')
echo "[stackrail k8s] provider module $PV (npm @pulumi/kubernetes is $NPM_VERSION)"
go run ./cmd/gen-k8s-schema "$SRC" ./cmd/pulumi-resource-kubernetes "${PV#v}"
echo "[stackrail k8s] compiling (about 10 minutes and 4 GB of memory on two cores)"
time nice -n 10 go build -trimpath -ldflags "-s -w -X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=$PV" \
  -o bin/pulumi-resource-kubernetes ./cmd/pulumi-resource-kubernetes
ENGINE=$(ls -d "$ROOT"/.engine/pulumi-v*/bin | tail -1)
# The engine asks for the version @pulumi/kubernetes names; install the binary under that version.
PULUMI_HOME=${1:-${PULUMI_HOME:-$ROOT/.stackrail/pulumi-home}} PULUMI_SKIP_UPDATE_CHECK=true \
  "$ENGINE/pulumi" plugin install resource kubernetes "$NPM_VERSION" --file bin/pulumi-resource-kubernetes
echo "[stackrail k8s] installed as resource-kubernetes-v$NPM_VERSION (built from $PV)"
