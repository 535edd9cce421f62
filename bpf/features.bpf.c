// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* Probes of what this kernel supports, for `bpfnet-exporter check`: one empty
 * program per attach type, loaded one at a time (the others' autoload off) so
 * that one refusal does not hide the rest, plus the map types later features
 * need. Loading (and attaching, where harmless) is the test; the programs do
 * nothing. The sockops and sk_msg programs are only ever loaded: attached to
 * a cgroup they would sit in this machine's own connections. */
#include "bpfnet.h"

/* key_size/value_size rather than __type: sockhash takes no BTF key/value
 * types on some kernels, and libbpf would log a warning and retry */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} feat_sockhash SEC(".maps");

/* 64 KiB: a power of two and a multiple of every page size (4K to 64K) */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 65536);
} feat_ringbuf SEC(".maps");

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(feat_tp_btf)
{
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_getpid")
int feat_tracepoint(void *ctx)
{
	return 0;
}

SEC("raw_tp/sys_enter")
int feat_raw_tp(void *ctx)
{
	return 0;
}

SEC("kprobe/tcp_v4_connect")
int BPF_KPROBE(feat_kprobe)
{
	return 0;
}

SEC("kretprobe/tcp_v4_connect")
int BPF_KRETPROBE(feat_kretprobe)
{
	return 0;
}

SEC("fentry/tcp_v4_connect")
int BPF_PROG(feat_fentry)
{
	return 0;
}

SEC("fexit/tcp_v4_connect")
int BPF_PROG(feat_fexit)
{
	return 0;
}

SEC("sockops")
int feat_sockops(struct bpf_sock_ops *skops)
{
	return 1;
}

SEC("sk_msg")
int feat_sk_msg(struct sk_msg_md *msg)
{
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
