# syntax=docker/dockerfile:1
#
# cner stream processor image (`cner serve`).
#
#   docker build -t cner:<version> .                                   # CPU (default target)
#   docker build --target runtime-cuda -t cner:<version>-cuda .        # GPU nodes (CUDA 12 + cuDNN 9)
#
# Both targets hold the same /app: package.json, dist/ (compiled TypeScript), bin/,
# schemas/ (the Avro schemas the processor reads and registers at startup), demo/
# (the records of `cner demo`), production node_modules, the default model
# bundle in models/default/ (the model-version topic can replace it at run time;
# versions land in CNER_MODEL_CACHE_DIR), the faster character model in
# models/fast/ (CNER_MODEL_DIR=fast) and the ICD-10 linker in models/icd10/
# (CNER_LINKER_DIR's default). They run as UID/GID 10001 and work with a
# read-only root filesystem when CNER_MODEL_CACHE_DIR and /tmp are writable volumes
# (the Helm chart mounts emptyDirs there).
#
# The build context must contain models/default/ and models/fast/ (bundles made by
# `cner-train export` and `cner-train quantize`) and models/icd10/ (a linker bundle made by `cner-train link-export`).

ARG NODE_VERSION=20
# CUDA runtime with cuDNN 9, as onnxruntime-node's CUDA 12 execution provider needs.
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04

# ---------------------------------------------------------------------------
# Compile the TypeScript sources.
FROM node:${NODE_VERSION}-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json .npmrc ./
# Scripts are not needed to compile; .npmrc skips onnxruntime-node's CUDA download anyway.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# ---------------------------------------------------------------------------
# Production dependencies, CPU: onnxruntime-node's bundled CPU binaries only
# (.npmrc: onnxruntime-node-install=skip). `--ignore-scripts` keeps npm from running
# this package's own `prepare` (tsc); `npm rebuild` then runs the dependencies'
# install scripts. The onnxruntime-node binaries of other operating systems and its
# GPU providers are dropped to keep the image small.
FROM node:${NODE_VERSION}-bookworm-slim AS deps-cpu
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm rebuild \
 && npm cache clean --force \
 && find node_modules/onnxruntime-node/bin -mindepth 2 -maxdepth 2 -type d \( -name darwin -o -name win32 \) -exec rm -rf {} + \
 && find node_modules/onnxruntime-node/bin \( -name libonnxruntime_providers_cuda.so -o -name libonnxruntime_providers_tensorrt.so \) -delete

# Production dependencies, CUDA: the environment variable overrides the .npmrc skip,
# so onnxruntime-node's install script fetches its CUDA 12 execution provider files.
FROM node:${NODE_VERSION}-bookworm-slim AS deps-cuda
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
ENV ONNXRUNTIME_NODE_INSTALL=cuda12
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm rebuild \
 && npm cache clean --force \
 && find node_modules/onnxruntime-node/bin -mindepth 2 -maxdepth 2 -type d \( -name darwin -o -name win32 \) -exec rm -rf {} + \
 && ls node_modules/onnxruntime-node/bin/napi-v*/linux/x64/libonnxruntime_providers_cuda.so

# ---------------------------------------------------------------------------
# The application files shared by both runtime targets.
FROM scratch AS app
COPY package.json /app/package.json
COPY bin /app/bin
COPY schemas /app/schemas
COPY demo /app/demo
COPY --from=build /src/dist /app/dist
COPY models/default /app/models/default
COPY models/fast /app/models/fast
COPY models/icd10 /app/models/icd10

# ---------------------------------------------------------------------------
# GPU runtime: CUDA/cuDNN base with the Node binary from the official image.
FROM node:${NODE_VERSION}-bookworm-slim AS node
FROM ${CUDA_IMAGE} AS runtime-cuda
# MALLOC_ARENA_MAX: as in the CPU runtime below.
ENV NODE_ENV=production \
    MALLOC_ARENA_MAX=2 \
    CNER_MODEL_DIR=default \
    CNER_MODEL_CACHE_DIR=/var/cache/cner/models \
    CNER_HTTP_PORT=9464 \
    CNER_EXECUTION_PROVIDERS=cuda,cpu
COPY --from=node /usr/local/bin/node /usr/local/bin/node
RUN groupadd --system --gid 10001 cner \
 && useradd --system --uid 10001 --gid cner --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin cner \
 && mkdir -p /var/cache/cner/models \
 && chown -R 10001:10001 /var/cache/cner
WORKDIR /app
COPY --from=deps-cuda /app/node_modules /app/node_modules
COPY --from=app /app /app
USER 10001:10001
EXPOSE 9464
ENTRYPOINT ["node", "/app/bin/cner.js"]
CMD ["serve"]

# ---------------------------------------------------------------------------
# CPU runtime (default target, last on purpose).
FROM node:${NODE_VERSION}-bookworm-slim AS runtime
# MALLOC_ARENA_MAX: glibc gives each allocating thread its own malloc arena (up
# to 8 per core), and the inference workers and onnxruntime keep freed memory
# in all of them. With 2, cner serve's peak RSS (linking, 200 records, bench)
# fell from 620 to 527 MB at the same throughput (bench/NOTES.md).
ENV NODE_ENV=production \
    MALLOC_ARENA_MAX=2 \
    CNER_MODEL_DIR=default \
    CNER_MODEL_CACHE_DIR=/var/cache/cner/models \
    CNER_HTTP_PORT=9464
RUN groupadd --system --gid 10001 cner \
 && useradd --system --uid 10001 --gid cner --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin cner \
 && mkdir -p /var/cache/cner/models \
 && chown -R 10001:10001 /var/cache/cner
WORKDIR /app
COPY --from=deps-cpu /app/node_modules /app/node_modules
COPY --from=app /app /app
USER 10001:10001
EXPOSE 9464
# The processor handles SIGTERM itself (drains in-flight batches, commits, leaves the group).
ENTRYPOINT ["node", "/app/bin/cner.js"]
CMD ["serve"]
