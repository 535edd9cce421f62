/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Common includes and helpers for every bpfnet-exporter BPF program. */
#ifndef BPFNET_H
#define BPFNET_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

#define AF_INET	     2
#define AF_INET6     10
#define IPPROTO_TCP  6
#define ECONNREFUSED 111
#define ETIMEDOUT    110

#include "histogram.h"

/* The address family label of every object's statistics (an IPv4-mapped
 * IPv6 peer counts as IPv4). */
enum family { FAMILY_IPV4, FAMILY_IPV6, FAMILY_COUNT };

/* Types userspace reads that no map or global of the object is declared
 * with (ring buffer records, a program's context, the enums whose values are
 * label values): naming them here puts them in the object's BTF, from which
 * the TypeScript binding is generated (scripts/gen-bindings.ts). Members are
 * declarations: BPFNET_EXPORT(enum family family; struct event event;). */
#define BPFNET_EXPORT(...)                                                                                             \
	struct bpfnet_exports {                                                                                        \
		__VA_ARGS__                                                                                            \
	};                                                                                                             \
	struct bpfnet_exports *const bpfnet_exports __attribute__((used)) = 0

/* Maps are counted with atomic adds even when they are per-CPU: a program in
 * process context can be interrupted by another program (softirq) touching
 * the same per-CPU slot on the same CPU. */
#define counter_add(ptr, v) __sync_fetch_and_add((ptr), (v))

#endif /* BPFNET_H */
