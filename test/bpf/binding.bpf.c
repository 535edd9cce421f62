// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* Maps and programs for testing the libbpf binding: a hash, a per-CPU array,
 * a ring buffer fed by a program the test runs, and a program the verifier
 * must refuse (loaded only when a test asks for it). */
#include "bpfnet.h"

struct record {
	__u64 seq;
	__u32 value;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} numbers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} per_cpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} records SEC(".maps");

struct emit_args {
	__u32 count;
	__u32 value;
};

/* Emits count records into the ring buffer and adds value to this CPU's counter. */
SEC("syscall")
int emit(struct emit_args *args)
{
	__u32 count = args->count, value = args->value, zero = 0;
	struct record r = {.value = value};
	__u64 *n = bpf_map_lookup_elem(&per_cpu, &zero);

	if (n)
		*n += value;
	for (__u32 i = 0; i < count && i < 64; i++) {
		r.seq = i;
		bpf_ringbuf_output(&records, &r, sizeof(r), 0);
	}
	return count;
}

/* Dereferences a number as if it were a pointer: the verifier refuses it. */
SEC("syscall")
int refused(struct emit_args *args)
{
	return *(__u32 *)(long)args->value;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
