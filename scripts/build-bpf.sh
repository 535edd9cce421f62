#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Compiles bpf/*.bpf.c into build/bpf/*.bpf.o (test/bpf/ into build/test-bpf/) with clang.
# vmlinux.h comes from this machine's BTF; CO-RE relocates the objects to the
# kernel they are loaded on.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/bpf
mkdir -p "$out"
if [ ! -s "$out/vmlinux.h" ]; then
  [ -r /sys/kernel/btf/vmlinux ] || { echo "build-bpf: /sys/kernel/btf/vmlinux is missing: build on a kernel with CONFIG_DEBUG_INFO_BTF=y" >&2; exit 1; }
  bpftool btf dump file /sys/kernel/btf/vmlinux format c > "$out/vmlinux.h.tmp"
  mv "$out/vmlinux.h.tmp" "$out/vmlinux.h"
fi
arch=$(uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')
CLANG=${CLANG:-clang}
# objects whose source is gone (renamed) would live on as stale bindings
for obj in "$out"/*.bpf.o build/test-bpf/*.bpf.o; do
  [ -e "$obj" ] || continue
  case "$obj" in build/test-bpf/*) src=test/bpf ;; *) src=bpf ;; esac
  [ -e "$src/$(basename "${obj%.o}").c" ] || { rm -f "$obj"; echo "removed $obj (no source)"; }
done
for src in bpf/*.bpf.c test/bpf/*.bpf.c; do
  case "$src" in test/*) dest=build/test-bpf ;; *) dest=$out ;; esac
  mkdir -p "$dest"
  [ -e "$src" ] || continue
  obj="$dest/$(basename "${src%.c}").o"
  # rebuild only when the source or a header is newer than the object
  if [ -e "$obj" ] && [ -z "$(find "$src" bpf/include "$(dirname "$src")" -maxdepth 1 -newer "$obj" -name '*.[ch]' | head -1)" ]; then
    continue
  fi
  # -mcpu=v3: 32-bit subregisters and atomics (compare-and-exchange, kernel 5.12+)
  "$CLANG" -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_"$arch" -Wall -Werror \
    -I "$out" -I bpf/include -I bpf -c "$src" -o "$obj.tmp"
  # libbpf's linker keeps the programs, maps, BTF and its line info (what
  # the verifier's messages and bpftool show source lines from) and leaves
  # out clang's DWARF: a quarter of the size, for the npm package
  bpftool gen object "$obj.tmp2" "$obj.tmp"
  rm -f "$obj.tmp"
  mv "$obj.tmp2" "$obj"
  echo "built $obj"
done
