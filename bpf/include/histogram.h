/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Log2 histograms kept in BPF maps.
 *
 * Slot i counts values v with 2^(i-1) < v <= 2^i (slot 0: v <= 1), so a value
 * lands in the first bucket whose upper bound is >= the value. Userspace
 * chooses which slots to expose as Prometheus buckets; because every bound is
 * a power of two, cumulative counts at any exposed bound are exact. */
#ifndef BPFNET_HISTOGRAM_H
#define BPFNET_HISTOGRAM_H

#define HIST_SLOTS 64 /* a power of two: indexes are masked with HIST_SLOTS - 1 */

struct hist {
	__u64 slots[HIST_SLOTS];
	__u64 sum;
};

/* floor(log2(v)) for v > 0, without loops or clz. */
static __always_inline __u32 log2_floor(__u64 v)
{
	__u32 r, shift;

	r = (v > 0xFFFFFFFFULL) << 5;
	v >>= r;
	shift = (v > 0xFFFF) << 4;
	v >>= shift;
	r |= shift;
	shift = (v > 0xFF) << 3;
	v >>= shift;
	r |= shift;
	shift = (v > 0xF) << 2;
	v >>= shift;
	r |= shift;
	shift = (v > 0x3) << 1;
	v >>= shift;
	r |= shift;
	return r | (__u32)(v >> 1);
}

/* The slot of v: ceil(log2(v)), 0 for v <= 1, at most HIST_SLOTS - 1. */
static __always_inline __u32 hist_slot(__u64 v)
{
	__u32 slot;

	if (v <= 1)
		return 0;
	slot = log2_floor(v - 1) + 1;
	return slot < HIST_SLOTS ? slot : HIST_SLOTS - 1;
}

/* The slot of v, bounded in a way older verifiers (6.1) follow: the
 * compiler may not drop a mask it cannot see through. */
static __always_inline __u32 hist_index(__u64 v)
{
	__u32 slot = hist_slot(v);

	barrier_var(slot);
	return slot & (HIST_SLOTS - 1);
}

/* For a histogram that several programs update. */
static __always_inline void hist_add(struct hist *h, __u64 v)
{
	__sync_fetch_and_add(&h->slots[hist_index(v)], 1);
	__sync_fetch_and_add(&h->sum, v);
}

/* For a per-CPU histogram only one tp_btf program updates: the kernel runs
 * a program at most once at a time per CPU (a nested run is skipped and
 * counted in its recursion misses), so no update can interleave. */
static __always_inline void hist_add_local(struct hist *h, __u64 v)
{
	h->slots[hist_index(v)]++;
	h->sum += v;
}

#endif /* BPFNET_HISTOGRAM_H */
