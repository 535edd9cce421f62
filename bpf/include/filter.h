/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Which connections to measure: by process, network namespace, cgroup and port.
 *
 * Each kind is a set in a map, switched on by filter_config. Values of one
 * kind are alternatives; kinds combine: "--pid 1 --pid 2 --port 80" measures
 * connections of process 1 or 2 on port 80. Userspace may change any of these
 * maps while programs run; a connection is judged when it opens. */
#ifndef BPFNET_FILTER_H
#define BPFNET_FILTER_H

#define FILTER_MAX_ENTRIES 1024
#define CGROUP_MAX_DEPTH   16

struct filter_config {
	__u8 pid;
	__u8 netns;
	__u8 cgroup;
	__u8 port;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct filter_config);
} filter_config SEC(".maps");

/* tgid (process id in the initial pid namespace) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FILTER_MAX_ENTRIES);
	__type(key, __u32);
	__type(value, __u8);
} filter_pids SEC(".maps");

/* inode number of the network namespace */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FILTER_MAX_ENTRIES);
	__type(key, __u32);
	__type(value, __u8);
} filter_netns SEC(".maps");

/* cgroup v2 id (inode number of its directory); matches descendants too */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FILTER_MAX_ENTRIES);
	__type(key, __u64);
	__type(value, __u8);
} filter_cgroups SEC(".maps");

/* local or remote port, host byte order */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FILTER_MAX_ENTRIES);
	__type(key, __u16);
	__type(value, __u8);
} filter_ports SEC(".maps");

static __always_inline struct filter_config *filters(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&filter_config, &zero);
}

static __always_inline bool pid_filter_active(void)
{
	struct filter_config *cfg = filters();

	return cfg && cfg->pid;
}

/* The process in whose context this runs (connect(), accept()). */
static __always_inline bool task_allowed(__u32 tgid)
{
	struct filter_config *cfg = filters();

	if (!cfg || !cfg->pid)
		return true;
	return bpf_map_lookup_elem(&filter_pids, &tgid) != NULL;
}

/* The cgroup v2 cgroup of the socket's owner: of the process that created
 * it, inherited by the sockets accept() returns from their listener (the
 * layout of sock_cgroup_data since 5.15). */
static __always_inline struct cgroup *sock_cgroup(const struct sock *sk)
{
	return BPF_CORE_READ(sk, sk_cgrp_data.cgroup);
}

/* Its id (the inode number of its directory); 0: unknown. For a socket a
 * BTF-typed hook (tp_btf, fentry) hands over: plain loads, which the
 * verifier makes fault-safe, instead of a helper call per pointer followed. */
static __always_inline __u64 sock_cgroup_id(const struct sock *sk)
{
	struct cgroup *cgrp = sk->sk_cgrp_data.cgroup;

	return cgrp ? cgrp->kn->id : 0;
}

static __always_inline bool cgroup_allowed(const struct sock *sk)
{
	struct cgroup *cgrp = sock_cgroup(sk);
	__u64 id;

	for (int i = 0; i < CGROUP_MAX_DEPTH && cgrp; i++) {
		id = BPF_CORE_READ(cgrp, kn, id);
		if (bpf_map_lookup_elem(&filter_cgroups, &id))
			return true;
		/* self is the first member of struct cgroup */
		cgrp = (struct cgroup *)BPF_CORE_READ(cgrp, self.parent);
	}
	return false;
}

static __always_inline bool ports_allowed(const struct sock *sk)
{
	__u16 lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	__u16 rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));

	return bpf_map_lookup_elem(&filter_ports, &lport) || bpf_map_lookup_elem(&filter_ports, &rport);
}

/* What the socket itself tells: its namespace, its cgroup (that of the process
 * that created it, inherited by accepted sockets) and, if with_ports, its
 * ports. */
static __always_inline bool sock_allowed(const struct sock *sk, bool with_ports)
{
	struct filter_config *cfg = filters();
	__u32 inum;

	if (!cfg)
		return true;
	if (cfg->netns) {
		inum = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
		if (!bpf_map_lookup_elem(&filter_netns, &inum))
			return false;
	}
	if (cfg->cgroup && !cgroup_allowed(sk))
		return false;
	if (with_ports && cfg->port && !ports_allowed(sk))
		return false;
	return true;
}

#endif /* BPFNET_FILTER_H */
