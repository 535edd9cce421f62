/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* State kept per socket for as long as a connection lives, keyed by the
 * address of its struct sock.
 *
 * Most of it sits in a set-associative table in an ARRAY map: a socket's set
 * is a hash of its address, its slot the first of SOCK_TABLE_WAYS that an
 * atomic compare-and-exchange claims. That takes no lock and allocates
 * nothing, where a BPF hash map takes a bucket lock with interrupts off and
 * allocates an element on every insert: on connection churn the hash map was
 * a quarter of the probes' cost. A socket whose set is full goes to an
 * overflow hash map, so nothing is lost until that is full too.
 *
 * Define SOCK_TABLE_VALUE (the value type) before including. Needs BPF
 * compare-and-exchange (kernel 5.12+, clang -mcpu=v3).
 *
 * Writers of one socket's entry are serialized by the socket itself (its
 * state changes happen under its lock); different sockets of one set may
 * claim slots concurrently, which the compare-and-exchange settles. */
#ifndef BPFNET_SOCK_TABLE_H
#define BPFNET_SOCK_TABLE_H

#define SOCK_TABLE_WAYS 4
/* defaults; userspace resizes both (sock_table to a power of two) */
#define SOCK_TABLE_SLOTS    65536
#define SOCK_TABLE_OVERFLOW 262144

struct sock_slot {
	__u64 sk; /* 0: free */
	SOCK_TABLE_VALUE value;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SOCK_TABLE_SLOTS);
	__type(key, __u32);
	__type(value, struct sock_slot);
} sock_table SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SOCK_TABLE_OVERFLOW);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, SOCK_TABLE_VALUE);
} sock_table_overflow SEC(".maps");

/* number of sets - 1 (a power of two - 1), set by userspace with the size */
const volatile __u32 sock_table_set_mask = SOCK_TABLE_SLOTS / SOCK_TABLE_WAYS - 1;

/* entries now in sock_table_overflow: lookups skip it while it is empty */
__u64 sock_table_overflowed = 0;

/* struct sock comes from a slab: mix the address, low bits say little */
static __always_inline __u32 sock_table_set(__u64 sk)
{
	return (__u32)(((sk >> 6) * 0x9E3779B97F4A7C15ULL) >> 40) & sock_table_set_mask;
}

static __always_inline struct sock_slot *sock_table_slot(__u32 set, __u32 way)
{
	__u32 i = set * SOCK_TABLE_WAYS + way;

	return bpf_map_lookup_elem(&sock_table, &i);
}

static __always_inline SOCK_TABLE_VALUE *sock_table_get(__u64 sk)
{
	__u32 set = sock_table_set(sk);
	struct sock_slot *s;

#pragma clang loop unroll(full)
	for (__u32 w = 0; w < SOCK_TABLE_WAYS; w++) {
		s = sock_table_slot(set, w);
		if (s && s->sk == sk)
			return &s->value;
	}
	if (!sock_table_overflowed)
		return NULL;
	return bpf_map_lookup_elem(&sock_table_overflow, &sk);
}

/* The entry of sk, claimed if it had none (its value then undefined: the
 * caller sets every field); NULL when the table and the overflow are full. */
static __always_inline SOCK_TABLE_VALUE *sock_table_put(__u64 sk)
{
	SOCK_TABLE_VALUE *v = sock_table_get(sk);
	__u32 set = sock_table_set(sk);
	static const SOCK_TABLE_VALUE zero;
	struct sock_slot *s;

	if (v) /* left by a close the kernel did not let us see */
		return v;
#pragma clang loop unroll(full)
	for (__u32 w = 0; w < SOCK_TABLE_WAYS; w++) {
		s = sock_table_slot(set, w);
		if (s && s->sk == 0 && __sync_val_compare_and_swap(&s->sk, 0, sk) == 0)
			return &s->value;
	}
	if (bpf_map_update_elem(&sock_table_overflow, &sk, &zero, BPF_NOEXIST))
		return NULL;
	__sync_fetch_and_add(&sock_table_overflowed, 1);
	return bpf_map_lookup_elem(&sock_table_overflow, &sk);
}

static __always_inline void sock_table_del(__u64 sk)
{
	__u32 set = sock_table_set(sk);
	struct sock_slot *s;

#pragma clang loop unroll(full)
	for (__u32 w = 0; w < SOCK_TABLE_WAYS; w++) {
		s = sock_table_slot(set, w);
		if (s && s->sk == sk) {
			s->sk = 0;
			return;
		}
	}
	if (sock_table_overflowed && bpf_map_delete_elem(&sock_table_overflow, &sk) == 0)
		__sync_fetch_and_sub(&sock_table_overflowed, 1);
}

#endif /* BPFNET_SOCK_TABLE_H */
