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

/* Maps are counted with atomic adds even when they are per-CPU: a program in
 * process context can be interrupted by another program (softirq) touching
 * the same per-CPU slot on the same CPU. */
#define counter_add(ptr, v) __sync_fetch_and_add((ptr), (v))

#endif /* BPFNET_H */
