// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* Runs bpf/include/histogram.h's hist_slot() in the kernel on values a test
 * passes in, so the bucket math is tested where it runs. */
#include "bpfnet.h"

#define VALUES 32

struct slot_test {
	__u64 values[VALUES];
	__u32 slots[VALUES];
};

SEC("syscall")
int hist_slots(struct slot_test *t)
{
	/* unrolled: the verifier wants constant offsets into the context */
#pragma clang loop unroll(full)
	for (int i = 0; i < VALUES; i++)
		t->slots[i] = hist_slot(t->values[i]);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
