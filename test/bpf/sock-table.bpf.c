// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* Runs bpf/include/sock-table.h's operations in the kernel on what a test
 * passes in: a list of (op, socket address, value), results written back. */
#include "bpfnet.h"

struct entry {
	__u64 value;
};
#define SOCK_TABLE_VALUE struct entry
#include "sock-table.h"

#define OPS 32
enum { OP_PUT = 1, OP_GET, OP_DEL };

struct table_ops {
	__u64 op[OPS];
	__u64 sk[OPS];
	__u64 value[OPS]; /* in: for put; out: for get (0: absent), 1/0 for put */
	__u64 overflowed; /* out: entries in the overflow map after the ops */
};

SEC("syscall")
int table_ops(struct table_ops *t)
{
	struct entry *e;

#pragma clang loop unroll(full)
	for (int i = 0; i < OPS; i++) {
		switch (t->op[i]) {
		case OP_PUT:
			e = sock_table_put(t->sk[i]);
			if (e)
				e->value = t->value[i];
			t->value[i] = e != NULL;
			break;
		case OP_GET:
			e = sock_table_get(t->sk[i]);
			t->value[i] = e ? e->value : 0;
			break;
		case OP_DEL:
			sock_table_del(t->sk[i]);
			break;
		}
	}
	t->overflowed = sock_table_overflowed;
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
