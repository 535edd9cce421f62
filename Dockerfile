# syntax=docker/dockerfile:1
# SPDX-License-Identifier: Apache-2.0
# The image the Helm chart runs: Debian 12 (bookworm) with Node.js, the system
# libbpf, the exporter's JavaScript and its compiled BPF objects.
#   docker build -t bpfnet-exporter:0.1.0 .
#   docker run --rm --privileged --pid=host -v /sys/fs/bpf:/sys/fs/bpf -v /sys/kernel/tracing:/sys/kernel/tracing bpfnet-exporter:0.1.0
# The BPF objects are compiled against the BTF of the kernel the build runs on
# (/sys/kernel/btf/vmlinux, as scripts/build-bpf.sh does); CO-RE relocates them
# to whichever kernel loads them. Builders without BTF (kernels without
# CONFIG_DEBUG_INFO_BTF) cannot build this image.
# test/integration/dockerfile.test.ts runs these steps on the host (no Docker
# engine there) and starts what the last stage holds.

# The supported Node.js versions: 22 (22.15 or later, as the OpenTelemetry
# packages need) and 24; the node:22 images are 22.15 or later.
ARG NODE_VERSION=22

# Build: clang and the libbpf headers compile bpf/*.bpf.c, bpftool writes
# vmlinux.h, the bindings are generated from the objects, tsc compiles src/.
FROM node:${NODE_VERSION}-bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang libbpf-dev bpftool \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.gen.json ./
COPY scripts/build-bpf.sh scripts/gen-bindings.ts scripts/record-revision.sh scripts/
COPY bpf bpf/
COPY src src/
RUN npm run build

# The production dependencies (koffi's prebuilt native module among them).
FROM node:${NODE_VERSION}-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

# Runtime: libbpf1 is the libbpf.so.1 that koffi loads (it brings libelf1 and
# zlib1g); the base image has the C++ runtime koffi's module needs.
FROM node:${NODE_VERSION}-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libbpf1 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=deps /app/node_modules node_modules/
COPY package.json ./
COPY bin bin/
COPY --from=build /src/build/js/src build/js/src/
COPY --from=build /src/build/bpf/*.bpf.o build/bpf/
ENV NODE_ENV=production
EXPOSE 19435
# No USER: loading and attaching BPF programs needs CAP_BPF, CAP_PERFMON,
# CAP_NET_ADMIN and CAP_SYS_ADMIN as effective capabilities, which a
# container process has only as root (Kubernetes grants no ambient
# capabilities to other users). The chart adds just those to uid 0.
ENTRYPOINT ["/app/bin/bpfnet-exporter"]
CMD ["run"]
