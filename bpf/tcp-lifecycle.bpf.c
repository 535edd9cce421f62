// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* TCP connection lifecycle: connects, accepts and closes, aggregated in maps.
 *
 * One program on sock:inet_sock_set_state (tp_btf) follows every TCP socket's
 * states; fexit on inet_csk_accept(), or tracepoints on accept() and
 * accept4() exits where fexit is not available, tell which process accepted
 * a connection (on loopback the handshake runs in the connecting process's
 * context, so the state change cannot). The three probes share the
 * per-connection table and are switched on by the enable_* settings, so a
 * disabled probe costs nothing: the verifier drops its code. */
#include "bpfnet.h"
#include "filter.h"
#include "tcp-lifecycle.h"

/* map sizes userspace sets before load (--accept-port-limit, --max-series) */
#define ACCEPT_KEYS_MAX	 1024
#define CONNECT_KEYS_MAX 10000
#define CLOSE_KEYS_MAX	 10000
#define POD_ADDRS_MAX	 4096

const volatile bool enable_connect = false;
const volatile bool enable_accept = false;
const volatile bool enable_close = false;
/* one event per closed connection and per failed connect, for spans */
const volatile bool enable_events = false;
/* pair a sidecar proxy's inbound connections with its upstream ones */
const volatile bool enable_sidecar = false;
/* sidecars named by process id, by command (what sidecar lookups need) */
const volatile bool sidecar_by_pid = false;
const volatile bool sidecar_by_comm = false;
/* what the aggregation maps are keyed by, besides family and role: the
 * owner's cgroup, the remote port of connects, the peer's pod */
const volatile bool key_cgroup = false;
const volatile bool key_peer_port = false;
const volatile bool key_peer = false;

enum sidecar_side { SIDE_NONE, SIDE_INBOUND, SIDE_OUTBOUND };

/* A connection between its opening and its close. */
struct conn {
	__u64 start_ns; /* client: SYN sent */
	__u64 established_ns;
	__u64 fin_ns;	    /* events: the first FIN */
	__u32 handshake_us; /* server */
	__u32 tgid;	    /* connecting or accepting process */
	__u16 lport;
	__u8 family;
	__u8 role;
	__u8 accepted;
	__u8 fin_from;	 /* events: enum fin_from */
	__u8 sidecar;	 /* sidecar: its index + 1, for its own connections */
	__u8 side;	 /* sidecar: enum sidecar_side */
	__u8 forwarded;	 /* sidecar inbound: paired with an upstream one */
	__u16 nat_port;	 /* sidecar inbound: the port NAT took it from, 0: none */
	__u32 nat_seq;	 /* sidecar inbound with nat_port: its place in that queue */
	char comm[16];	 /* events: of tgid */
	__u64 id;	 /* events, sidecar: from conn_seq */
	__u64 parent_id; /* sidecar: see struct conn_event */
	__u64 root_id;
	__u64 parent_key;  /* sidecar outbound: the inbound socket it serves */
	__u64 accepted_ns; /* sidecar inbound: when accept() returned it */
	__u64 cgroup;	   /* the owner's cgroup v2 id, with key_cgroup or events */
	__u32 peer;	   /* client: the peer's pod on this node */
};

/* the last connection id handed out */
__u64 conn_seq = 0;

#define SOCK_TABLE_VALUE struct conn
#include "sock-table.h"

/* The aggregation maps: shared by all CPUs (per-CPU values of this size,
 * times a node's CPUs, would cost too much memory), so updated with atomic
 * adds. Allocated as entries are made: their size is a bound, not a cost. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, CONNECT_KEYS_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct connect_key);
	__type(value, struct connect_stats);
} tcp_connects SEC(".maps");

/* preallocated: older kernels allow tracepoint programs (the accept exits)
 * only preallocated hash maps */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ACCEPT_KEYS_MAX);
	__type(key, struct accept_key);
	__type(value, struct accept_stats);
} tcp_accepts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, CLOSE_KEYS_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct close_key);
	__type(value, struct close_stats);
} tcp_closes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, POD_ADDRS_MAX);
	__type(key, struct pod_addr);
	__type(value, __u32);
} pod_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct cgroup_names);
} cgroup_names SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cgroup_names);
} cgroup_names_scratch SEC(".maps");

/* what a new entry of the aggregation maps starts from */
static union {
	struct connect_stats connect;
	struct accept_stats accept;
	struct close_stats close;
} zero_stats;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ERR_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} tcp_lifecycle_errors SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} tcp_events SEC(".maps");

/* the sidecars: by process id (--sidecar-pid) and by command (--sidecar-comm) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u32);
} sidecar_pids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_SIDECARS);
	__type(key, char[16]);
	__type(value, __u32);
} sidecar_comms SEC(".maps");

/* processes a sidecar forked while it held an inbound connection it had
 * not forwarded (a child per connection, as socat's fork), with the
 * command they had then: one that execs another program is no sidecar */
struct sidecar_fork {
	__u32 sidecar;
	char comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct sidecar_fork);
} sidecar_forks SEC(".maps");

/* set once sidecar_forks has an entry: until then no lookup is made */
__u32 sidecar_forked = 0;

/* The processes found to be sidecars, marked on their main thread: the
 * receive and send hooks, which run for every socket's reads and writes,
 * look no further in any other process (a task with no BPF storage at all
 * is one pointer load). */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u8);
} sidecar_processes SEC(".maps");

/* the inbound connection a sidecar's thread last accepted or read from: the
 * one its next connect upstream serves (an event loop accepts, reads and
 * connects on one thread; a thread per connection reads and connects on
 * the connection's own thread) */
struct thread_inbound {
	__u64 key; /* the inbound socket */
	__u64 id;  /* its connection id, as the socket may be reused */
	__u64 accepted_ns;
	__u8 by_read; /* taken by a read, not just accepted (or inherited) */
	__u8 pad[7];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct thread_inbound);
} sidecar_threads SEC(".maps");

/* a sidecar's upstream connections that reached established, by their
 * four-tuple as the application will see it when it accepts */

struct upstream {
	__u64 connect_ns;
	__u64 inbound_id; /* the inbound connection it serves, 0: none */
	__u32 sidecar;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct tuple);
	__type(value, struct upstream);
} sidecar_upstreams SEC(".maps");

/* sidecar_upstreams' entries by the port they go to (evicted ones stay
 * counted): an accept on a port no sidecar connected to looks up nothing */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u32);
} sidecar_upstream_ports SEC(".maps");

/* With sidecars: where each connecting socket of this host asked to go, by
 * its own address and port. A sidecar that NAT (a REDIRECT, as Istio and
 * Linkerd capture a pod's inbound traffic) handed a connection to finds
 * there the destination the client asked for: the one its connect upstream
 * for that connection goes to (on the pod's address or loopback).
 *
 * Every connect of the host writes one, so it is a direct-mapped cache in
 * an ARRAY map (a slot by a hash of the client's end, plain stores: no
 * lock, no allocation; an LRU hash's update cost every connect a third of
 * what the sidecar mode cost it). A slot is needed only from the client's
 * established to the sidecar's accept; a later connect of the same hash
 * overwrites it. A check word over both ends tells a slot two CPUs wrote at
 * once from a whole one. */
struct endpoint {
	__u8 addr[16];
	__u16 port;
	__u16 family;
};

struct destination_slot {
	struct endpoint from; /* the client's end */
	struct endpoint to;   /* where it asked to go */
	__u32 check;
	__u32 next; /* a set's first slot: the way its next record goes to */
};

/* four ways a set, filled in turn: a record is lost only to four later
 * connects of its set before the sidecar accepts it */
#define DESTINATION_WAYS  4
#define DESTINATION_SLOTS 16384

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, DESTINATION_SLOTS);
	__type(key, __u32);
	__type(value, struct destination_slot);
} client_destinations SEC(".maps");

/* A sidecar's inbound connections that NAT sent to it and that are not
 * forwarded yet, queued by the destination port they asked for, in the
 * order it accepted them: its connects upstream to that port take them in
 * that order, whichever thread or process makes them. */
struct nat_queue {
	__u32 sidecar;
	__u16 port;
	__u16 family;
};

struct nat_ends {
	__u32 head; /* the next to take */
	__u32 tail; /* the next to add */
};

struct nat_slot {
	struct nat_queue q;
	__u32 seq;
};

struct nat_pending {
	__u64 key; /* the inbound socket */
	__u64 id;
	__u64 accepted_ns;
	__u8 addr[16]; /* the destination address it asked for */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct nat_queue);
	__type(value, struct nat_ends);
} sidecar_nat_queues SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct nat_slot);
	__type(value, struct nat_pending);
} sidecar_nat_pending SEC(".maps");

/* entries of a queue skipped at most when taking one (taken by another
 * path, closed, or evicted) */
#define NAT_SKIP_MAX 8

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_SIDECARS);
	__type(key, __u32);
	__type(value, struct sidecar_stats);
} sidecar_stats SEC(".maps");

static __always_inline void count_error(__u32 err)
{
	__u64 *n = bpf_map_lookup_elem(&tcp_lifecycle_errors, &err);

	if (n)
		counter_add(n, 1);
}

/* Keeps the names of the socket owner's cgroup and its ancestors, unless
 * kept already. */
static __always_inline void remember_cgroup(const struct sock *sk)
{
	struct cgroup *cgrp = sock_cgroup(sk);
	struct cgroup_names *n;
	__u32 zero = 0;
	__u64 id;

	if (!cgrp)
		return;
	id = BPF_CORE_READ(cgrp, kn, id);
	if (bpf_map_lookup_elem(&cgroup_names, &id))
		return;
	n = bpf_map_lookup_elem(&cgroup_names_scratch, &zero);
	if (!n)
		return;
	n->level = BPF_CORE_READ(cgrp, level);
	for (int i = 0; i < CGROUP_NAME_LEVELS; i++) {
		n->names[i][0] = 0;
		if (!cgrp || i >= n->level)
			continue;
		bpf_probe_read_kernel_str(n->names[i], CGROUP_NAME_LEN, BPF_CORE_READ(cgrp, kn, name));
		cgrp = (struct cgroup *)BPF_CORE_READ(cgrp, self.parent);
	}
	bpf_map_update_elem(&cgroup_names, &id, n, BPF_NOEXIST);
}

/* The entry of key in an aggregation map, made if new; when the map has no
 * room, the overflow entry (made by userspace at load), counted as err. A
 * new entry's owner's cgroup is remembered by name. */
static __always_inline void *stats_entry(void *map, const void *key, const void *overflow, __u32 err,
					 const struct sock *sk)
{
	void *v = bpf_map_lookup_elem(map, key);

	if (v)
		return v;
	if (key_cgroup)
		remember_cgroup(sk);
	/* fails when the map is full, or another CPU made it first */
	bpf_map_update_elem(map, key, &zero_stats, BPF_NOEXIST);
	v = bpf_map_lookup_elem(map, key);
	if (v)
		return v;
	count_error(err);
	return bpf_map_lookup_elem(map, overflow);
}

/* IPv4-mapped IPv6 peers (::ffff:a.b.c.d) travel as IPv4: count them so. */
static __always_inline __u8 family_of(const struct sock *sk)
{
	__u32 mapped[3];

	if (sk->__sk_common.skc_family == AF_INET)
		return FAMILY_IPV4;
	if (!bpf_core_field_exists(sk->__sk_common.skc_v6_daddr)) /* no CONFIG_IPV6 */
		return FAMILY_IPV6;
	mapped[0] = sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32[0];
	mapped[1] = sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32[1];
	mapped[2] = sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32[2];
	if (mapped[0] == 0 && mapped[1] == 0 && mapped[2] == bpf_htonl(0xffff))
		return FAMILY_IPV4;
	return FAMILY_IPV6;
}

/* The connection's addresses and ports, as its family reads them. Read
 * field by field (sk may be a plain address, not a BTF pointer). The local
 * port is the header template's: by the state change to CLOSE the kernel has
 * released the bound port (skc_num) already. */
static __always_inline void read_tuple(const struct sock *sk, struct tuple *t, __u8 family)
{
	__u32 v4;

	__builtin_memset(t, 0, sizeof(*t));
	t->lport = bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
	t->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (BPF_CORE_READ(sk, __sk_common.skc_family) == AF_INET) {
		v4 = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__builtin_memcpy(t->laddr, &v4, 4);
		v4 = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memcpy(t->raddr, &v4, 4);
		return;
	}
	if (!bpf_core_field_exists(sk->__sk_common.skc_v6_daddr))
		return;
	if (family == FAMILY_IPV4) {
		v4 = BPF_CORE_READ(sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32[3]);
		__builtin_memcpy(t->laddr, &v4, 4);
		v4 = BPF_CORE_READ(sk, __sk_common.skc_v6_daddr.in6_u.u6_addr32[3]);
		__builtin_memcpy(t->raddr, &v4, 4);
		return;
	}
	BPF_CORE_READ_INTO(&t->laddr, sk, __sk_common.skc_v6_rcv_saddr);
	BPF_CORE_READ_INTO(&t->raddr, sk, __sk_common.skc_v6_daddr);
}

/* A reserved event with what every kind has; NULL (and counted) when the
 * ring buffer is full. */
static __always_inline struct conn_event *new_event(const struct sock *sk, const struct conn *c, __u8 kind, __u8 family)
{
	struct conn_event *e = bpf_ringbuf_reserve(&tcp_events, sizeof(*e), 0);

	if (!e) {
		count_error(kind == EVENT_CLOSE ? ERR_LOST_CLOSE : ERR_LOST_CONNECT);
		return NULL;
	}
	e->kind = kind;
	e->family = family;
	e->role = c->role;
	e->tgid = c->tgid;
	e->cgroup = c->cgroup;
	e->peer = c->peer;
	e->id = c->id;
	e->parent_id = c->parent_id;
	e->root_id = c->root_id;
	e->fin_ns = c->fin_ns;
	e->fin_from = c->fin_from;
	__builtin_memset(e->pad, 0, sizeof(e->pad));
	__builtin_memcpy(e->comm, c->comm, sizeof(e->comm));
	read_tuple(sk, &e->ends, family);
	return e;
}

static __always_inline void track(__u64 key, const struct conn *c)
{
	struct conn *slot = sock_table_put(key);

	if (slot)
		*slot = *c;
	else
		count_error(ERR_CONN_TABLE_FULL);
}

/* The kernel's clock of the connection, refreshed as each packet is processed
 * (tcp_rcv_state_process): as good as bpf_ktime_get_ns() in the transitions a
 * packet causes, and a field read instead of a clock read. */
static __always_inline __u64 packet_time_ns(const struct tcp_sock *tp)
{
	return tp->tcp_mstamp * 1000;
}

static __always_inline __u64 next_conn_id(void)
{
	return __sync_fetch_and_add(&conn_seq, 1) + 1;
}

static __always_inline bool same_comm(const char *a, const char *b)
{
	for (int i = 0; i < 16; i++) {
		if (a[i] != b[i])
			return false;
		if (!a[i])
			return true;
	}
	return true;
}

/* The sidecar the current process is, by pid or by command; -1: none. */
static __always_inline int current_sidecar(__u32 tgid)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct sidecar_fork *f;
	char comm[16];
	__u32 *idx;

	if (sidecar_by_pid) {
		idx = bpf_map_lookup_elem(&sidecar_pids, &tgid);
		if (idx)
			return *idx < MAX_SIDECARS ? *idx : -1;
	}
	if (!sidecar_by_comm && !sidecar_forked)
		return -1;
	__builtin_memcpy(comm, task->comm, sizeof(comm));
	if (sidecar_forked) {
		f = bpf_map_lookup_elem(&sidecar_forks, &tgid);
		if (f && same_comm(f->comm, comm))
			return f->sidecar < MAX_SIDECARS ? f->sidecar : -1;
	}
	if (!sidecar_by_comm)
		return -1;
	idx = bpf_map_lookup_elem(&sidecar_comms, comm);
	return idx && *idx < MAX_SIDECARS ? *idx : -1;
}

/* The current process is sidecar idx's: marked for the receive and send
 * hooks (for good: a process does not stop being one). */
static __always_inline void mark_sidecar_process(void)
{
	struct task_struct *task = bpf_get_current_task_btf();

	bpf_task_storage_get(&sidecar_processes, task->group_leader, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
}

/* Whether the current process was marked a sidecar's. */
static __always_inline bool in_sidecar_process(void)
{
	struct task_struct *task = bpf_get_current_task_btf();

	return bpf_task_storage_get(&sidecar_processes, task->group_leader, 0, 0) != NULL;
}

static __always_inline struct sidecar_stats *stats_of_sidecar(__u32 idx)
{
	return bpf_map_lookup_elem(&sidecar_stats, &idx);
}

/* The inbound connection a sidecar thread serves now, unless it is already
 * forwarded (or gone, its socket reused by another connection). */
static __always_inline struct conn *thread_inbound(__u32 tid, struct thread_inbound **tp)
{
	struct thread_inbound *t = bpf_map_lookup_elem(&sidecar_threads, &tid);
	struct conn *in;

	if (!t)
		return NULL;
	in = sock_table_get(t->key);
	if (!in || in->id != t->id || in->forwarded)
		return NULL;
	*tp = t;
	return in;
}

/* Two addresses as struct tuple and struct endpoint hold them (4-byte aligned). */
static __always_inline bool same_addr(const __u8 *a, const __u8 *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;

	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3];
}

static __always_inline bool is_loopback(const __u8 *addr, __u8 family)
{
	const __u32 *w = (const __u32 *)addr;

	if (family == FAMILY_IPV4)
		return addr[0] == 127;
	return !w[0] && !w[1] && !w[2] && w[3] == bpf_htonl(1);
}

/* A connection's addresses and ports, sk a BTF pointer (of a BTF-typed
 * hook, or bpf_skc_to_tcp_sock()): plain loads. The local port is the bound
 * one (skc_num), so not for a socket in CLOSE: read_tuple() is. */
static __always_inline void btf_tuple(const struct sock *sk, struct tuple *t, __u8 family)
{
	__u32 *l = (__u32 *)t->laddr, *r = (__u32 *)t->raddr;

	__builtin_memset(t, 0, sizeof(*t));
	t->lport = sk->__sk_common.skc_num;
	t->rport = bpf_ntohs(sk->__sk_common.skc_dport);
	if (sk->__sk_common.skc_family == AF_INET) {
		l[0] = sk->__sk_common.skc_rcv_saddr;
		r[0] = sk->__sk_common.skc_daddr;
	} else if (!bpf_core_field_exists(sk->__sk_common.skc_v6_daddr)) {
		return;
	} else if (family == FAMILY_IPV4) {
		l[0] = sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32[3];
		r[0] = sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32[3];
	} else {
		for (int i = 0; i < 4; i++) {
			l[i] = sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32[i];
			r[i] = sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32[i];
		}
	}
}

/* A multiplicative mix of an endpoint, for client_destinations. */
static __always_inline __u32 endpoint_hash(const __u8 *addr, __u16 port, __u32 seed)
{
	const __u32 *w = (const __u32 *)addr;
	__u64 h = seed;

	for (int i = 0; i < 4; i++)
		h = (h ^ w[i]) * 0x9E3779B97F4A7C15ULL;
	h = (h ^ port) * 0x9E3779B97F4A7C15ULL;
	return (__u32)(h >> 32);
}

/* The check word: the slot's other words folded, never 0 (an empty slot). */
static __always_inline __u32 destination_check(const struct destination_slot *d)
{
	const __u32 *w = (const __u32 *)d;
	__u32 x = 0x5bd1e995;

	for (int i = 0; i < offsetof(struct destination_slot, check) / 4; i++)
		x = (x ^ w[i]) * 0x01000193;
	return x | 1;
}

/* With sidecars: a connection this host opened is established: where it
 * asked to go, by its own address and port, for a sidecar NAT hands it to.
 * Every connect of the host pays this: plain loads and stores. */
static __always_inline void remember_destination(const struct sock *sk)
{
	__u8 family = family_of(sk);
	struct destination_slot *d;
	struct tuple t;
	__u32 i;

	btf_tuple(sk, &t, family);
	i = endpoint_hash(t.laddr, t.lport, family) & (DESTINATION_SLOTS - DESTINATION_WAYS);
	d = bpf_map_lookup_elem(&client_destinations, &i);
	if (!d)
		return;
	i += d->next++ & (DESTINATION_WAYS - 1);
	d = bpf_map_lookup_elem(&client_destinations, &i);
	if (!d)
		return;
	d->check = 0;
	__builtin_memcpy(d->from.addr, t.laddr, sizeof(d->from.addr));
	d->from.port = t.lport;
	d->from.family = family;
	__builtin_memcpy(d->to.addr, t.raddr, sizeof(d->to.addr));
	d->to.port = t.rport;
	d->to.family = family;
	d->check = destination_check(d);
}

/* Where the client at addr, port asked to go, copied into to; false: not
 * known (not a client of this host, or overwritten since). */
static __always_inline bool client_destination(const __u8 *addr, __u16 port, __u8 family, struct endpoint *to)
{
	__u32 set = endpoint_hash(addr, port, family) & (DESTINATION_SLOTS - DESTINATION_WAYS), i, next;
	struct destination_slot *d, got;

	d = bpf_map_lookup_elem(&client_destinations, &set);
	if (!d)
		return false;
	next = d->next;
	/* the newest first: the kernel gives one local port to connects to
	 * different destinations, and the one accepted now most likely
	 * connected last */
	for (int w = 1; w <= DESTINATION_WAYS; w++) {
		i = set + ((next - w) & (DESTINATION_WAYS - 1));
		d = bpf_map_lookup_elem(&client_destinations, &i);
		if (!d)
			return false;
		got = *d;
		if (got.check && got.check == destination_check(&got) && got.from.port == port &&
		    got.from.family == family && same_addr(got.from.addr, addr)) {
			*to = got.to;
			return true;
		}
	}
	return false;
}

/* Sidecar idx's inbound connection c (socket key, four-tuple k), not
 * queued yet, asked for dst: if NAT sent it there from another
 * destination, queue it under that destination's port. */
static __always_inline void nat_enqueue(__u64 key, struct conn *c, const struct tuple *k, int idx,
					const struct endpoint *to)
{
	struct nat_pending p = {.key = key, .id = c->id, .accepted_ns = c->accepted_ns};
	struct nat_slot slot = {.q = {.sidecar = idx, .family = c->family}};
	struct nat_ends fresh = {}, *e;

	/* one that asked for this very socket */
	if (to->port == k->lport && same_addr(to->addr, k->laddr))
		return;
	slot.q.port = to->port;
	__builtin_memcpy(p.addr, to->addr, sizeof(p.addr));
	e = bpf_map_lookup_elem(&sidecar_nat_queues, &slot.q);
	if (!e) {
		bpf_map_update_elem(&sidecar_nat_queues, &slot.q, &fresh, BPF_NOEXIST);
		e = bpf_map_lookup_elem(&sidecar_nat_queues, &slot.q);
		if (!e)
			return;
	}
	slot.seq = __sync_fetch_and_add(&e->tail, 1);
	bpf_map_update_elem(&sidecar_nat_pending, &slot, &p, BPF_ANY);
	c->nat_port = to->port;
	c->nat_seq = slot.seq;
}

/* Moves a queue's head past what is no longer there (forwarded another
 * way, closed), so that its next connect finds the oldest still waiting. */
static __always_inline void nat_compact(struct nat_slot *slot)
{
	struct nat_ends *e = bpf_map_lookup_elem(&sidecar_nat_queues, &slot->q);
	__u32 head;

	if (!e)
		return;
	for (int i = 0; i < NAT_SKIP_MAX; i++) {
		head = e->head;
		if (head == e->tail)
			return;
		slot->seq = head;
		if (bpf_map_lookup_elem(&sidecar_nat_pending, slot))
			return;
		__sync_val_compare_and_swap(&e->head, head, head + 1);
	}
}

/* An inbound connection NAT queued is forwarded another way, or closed:
 * out of its queue. */
static __always_inline void nat_forget(struct conn *c)
{
	struct nat_slot slot = {.q = {.sidecar = c->sidecar - 1, .port = c->nat_port, .family = c->family},
				.seq = c->nat_seq};

	if (!c->nat_port)
		return;
	c->nat_port = 0;
	bpf_map_delete_elem(&sidecar_nat_pending, &slot);
	nat_compact(&slot);
}

/* The inbound connection of sidecar idx that NAT took from the destination
 * a connect goes to (its port; its address, or any when the connect goes
 * to loopback) and that waited longest, taken off its queue; NULL: none. */
static __always_inline struct conn *nat_take(int idx, __u8 family, const struct tuple *to, __u64 *accepted_ns,
					     __u64 *key)
{
	struct nat_slot slot = {.q = {.sidecar = idx, .port = to->rport, .family = family}};
	bool loopback = is_loopback(to->raddr, family);
	struct nat_pending *p, got;
	struct nat_ends *e;
	struct conn *in;
	__u32 head;

	e = bpf_map_lookup_elem(&sidecar_nat_queues, &slot.q);
	if (!e)
		return NULL;
	for (int i = 0; i < NAT_SKIP_MAX; i++) {
		head = e->head;
		if (head == e->tail)
			return NULL;
		slot.seq = head;
		p = bpf_map_lookup_elem(&sidecar_nat_pending, &slot);
		/* the oldest asked for another address: not this connect's */
		if (p && !loopback && !same_addr(p->addr, to->raddr))
			return NULL;
		if (__sync_val_compare_and_swap(&e->head, head, head + 1) != head)
			continue; /* another CPU took it */
		if (!p)
			continue; /* evicted */
		got = *p;
		bpf_map_delete_elem(&sidecar_nat_pending, &slot);
		in = sock_table_get(got.key);
		/* not forwarded another way since, nor closed */
		if (in && in->id == got.id && !in->forwarded) {
			in->nat_port = 0;
			*accepted_ns = got.accepted_ns;
			*key = got.key;
			return in;
		}
	}
	return NULL;
}

/* A sidecar connects upstream (sk, connection c): for the inbound
 * connection NAT took from that destination, else for the one its thread
 * serves. */
static __always_inline void sidecar_connect(const struct sock *sk, struct conn *c, __u32 tgid, __u32 tid)
{
	int idx = current_sidecar(tgid);
	struct thread_inbound *t = NULL;
	struct conn *in, *held;
	struct sidecar_stats *st;
	__u64 accepted_ns = 0, key = 0;
	struct tuple to;
	__u8 family;

	if (idx < 0)
		return;
	mark_sidecar_process();
	c->sidecar = idx + 1;
	c->side = SIDE_OUTBOUND;
	if (!c->id)
		c->id = next_conn_id();
	in = thread_inbound(tid, &t);
	family = family_of(sk);
	btf_tuple(sk, &to, family);
	/* the thread's own connection when NAT took it from this port, else
	 * the queue's oldest for this destination, else the thread's own */
	if (in && t && in->nat_port == to.rport) {
		accepted_ns = t->accepted_ns;
		key = t->key;
	} else {
		held = in;
		in = nat_take(idx, family, &to, &accepted_ns, &key);
		if (!in && held && t) {
			in = held;
			accepted_ns = t->accepted_ns;
			key = t->key;
		}
	}
	if (!in || !accepted_ns)
		return;
	in->forwarded = 1;
	nat_forget(in);
	c->parent_id = in->id;
	c->parent_key = key;
	c->root_id = in->root_id ? in->root_id : in->id;
	st = stats_of_sidecar(idx);
	if (st)
		hist_add(&st->forward_ns, c->start_ns - accepted_ns);
}

/* A sidecar's upstream connection is established: the application will
 * accept it with the four-tuple reversed. */
static __always_inline void sidecar_upstream(const struct sock *sk, const struct conn *c)
{
	struct upstream u = {.connect_ns = c->start_ns, .inbound_id = c->parent_id, .sidecar = c->sidecar - 1};
	struct tuple t, key;
	__u32 port, *n;

	btf_tuple(sk, &t, c->family);
	__builtin_memcpy(key.laddr, t.raddr, sizeof(key.laddr));
	__builtin_memcpy(key.raddr, t.laddr, sizeof(key.raddr));
	key.lport = t.rport;
	key.rport = t.lport;
	if (bpf_map_update_elem(&sidecar_upstreams, &key, &u, BPF_NOEXIST)) {
		/* the four-tuple again, its entry counted already */
		bpf_map_update_elem(&sidecar_upstreams, &key, &u, BPF_ANY);
		return;
	}
	port = key.lport;
	n = bpf_map_lookup_elem(&sidecar_upstream_ports, &port);
	if (n)
		__sync_fetch_and_add(n, 1);
}

/* accept() returned connection c (socket key) in the current process: an
 * application taking a sidecar's upstream connection, or a sidecar taking
 * an inbound one. */
static __always_inline void sidecar_accept(__u64 key, struct conn *c, __u32 tgid, __u32 tid, __u64 now)
{
	struct thread_inbound t = {.key = key, .accepted_ns = now, .by_read = 0};
	struct sidecar_stats *st;
	__u32 port = c->lport, *n;
	struct endpoint dst;
	bool read = false;
	struct upstream *u;
	struct tuple k;
	int idx;

	n = bpf_map_lookup_elem(&sidecar_upstream_ports, &port);
	if (n && *n) {
		read_tuple((const struct sock *)key, &k, c->family);
		read = true;
		u = bpf_map_lookup_elem(&sidecar_upstreams, &k);
		if (u) {
			st = stats_of_sidecar(u->sidecar);
			if (st)
				hist_add(&st->upstream_ns, now - u->connect_ns);
			/* the inbound connection is the parent of both its legs */
			c->parent_id = u->inbound_id;
			c->root_id = u->inbound_id;
			if (!bpf_map_delete_elem(&sidecar_upstreams, &k))
				__sync_fetch_and_add(n, -1);
		}
	}
	idx = current_sidecar(tgid);
	if (idx < 0)
		return;
	mark_sidecar_process();
	c->sidecar = idx + 1;
	c->side = SIDE_INBOUND;
	c->accepted_ns = now;
	if (!c->id)
		c->id = next_conn_id();
	t.id = c->id;
	if (!read)
		read_tuple((const struct sock *)key, &k, c->family);
	/* a client of this host: where it asked to go */
	if (client_destination(k.raddr, k.rport, c->family, &dst))
		nat_enqueue(key, c, &k, idx, &dst);
	bpf_map_update_elem(&sidecar_threads, &tid, &t, BPF_ANY);
}

/* connect(): CLOSE -> SYN_SENT, in the connecting process. The local port may
 * not be chosen yet, so ports are judged at the outcome. */
static __always_inline void on_syn_sent(const struct sock *sk, __u64 key)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32;
	struct conn c = {};

	if (!task_allowed(tgid) || !sock_allowed(sk, false))
		return;
	c.start_ns = bpf_ktime_get_ns();
	c.tgid = tgid;
	c.role = ROLE_CLIENT;
	if (key_cgroup || enable_events)
		c.cgroup = sock_cgroup_id(sk);
	if (enable_events)
		bpf_get_current_comm(c.comm, sizeof(c.comm));
	/* with sidecars, only theirs need one: sidecar_connect() */
	if (enable_events)
		c.id = next_conn_id();
	if (enable_sidecar)
		sidecar_connect(sk, &c, tgid, (__u32)pid_tgid);
	track(key, &c);
}

/* The pod on this node whose address the socket's peer has; 0: none. sk
 * comes from a BTF-typed hook: its fields are plain loads. */
static __always_inline __u32 peer_pod(const struct sock *sk, __u8 family)
{
	struct pod_addr a = {.family = family};
	__u32 *pod;

	if (sk->__sk_common.skc_family == AF_INET) {
		a.addr32[0] = sk->__sk_common.skc_daddr;
	} else if (!bpf_core_field_exists(sk->__sk_common.skc_v6_daddr)) {
		return 0;
	} else if (family == FAMILY_IPV4) {
		a.addr32[0] = sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32[3];
	} else {
		for (int i = 0; i < 4; i++)
			a.addr32[i] = sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32[i];
	}
	pod = bpf_map_lookup_elem(&pod_addrs, &a);
	return pod ? *pod : 0;
}

/* A connect's outcome, counted by its owner, peer and remote port. */
static __always_inline void record_connect(const struct sock *sk, const struct conn *c, __u8 family, __u32 result,
					   __u64 established_ns)
{
	struct connect_key k = {.family = family}, overflow = {.family = family};
	struct connect_stats *stats;

	if (key_cgroup)
		k.cgroup = c->cgroup;
	if (key_peer)
		k.peer = c->peer;
	if (key_peer_port)
		k.peer_port = bpf_ntohs(sk->__sk_common.skc_dport); /* sk: of a BTF-typed hook */
	stats = stats_entry(&tcp_connects, &k, &overflow, ERR_CONNECTS_FULL, sk);
	if (!stats)
		return;
	counter_add(&stats->results[result & (CONNECT_RESULT_COUNT - 1)], 1);
	if (established_ns)
		hist_add(&stats->latency_ns, established_ns - c->start_ns);
}

static __always_inline void on_connect_outcome(const struct sock *sk, __u64 key, bool established)
{
	struct tcp_sock *tp;
	struct conn *c;
	__u32 family, result;
	__u64 now;

	c = sock_table_get(key);
	if (!c)
		return;
	if (!sock_allowed(sk, true)) {
		sock_table_del(key);
		return;
	}
	family = family_of(sk);
	if (!established) {
		if (sk->sk_err == ECONNREFUSED)
			result = CONNECT_REFUSED;
		else if (sk->sk_err == ETIMEDOUT)
			result = CONNECT_TIMEOUT;
		else
			result = CONNECT_ABORTED;
	} else {
		result = CONNECT_ESTABLISHED;
	}
	if (key_peer || enable_events)
		c->peer = peer_pod(sk, family);
	if (!established && enable_events) {
		struct conn_event *e = new_event(sk, c, EVENT_CONNECT_FAILED, family);

		if (e) {
			tp = bpf_skc_to_tcp_sock((void *)sk);
			e->start_ns = c->start_ns;
			e->established_ns = 0;
			e->end_ns = bpf_ktime_get_ns();
			e->sent_bytes = 0;
			e->received_bytes = 0;
			e->retransmits = tp ? tp->total_retrans : 0; /* SYNs sent again */
			e->srtt_us = 0;
			e->result = result;
			bpf_ringbuf_submit(e, 0);
		}
	}
	/* SYN-ACK processing refreshed the connection's clock */
	tp = established ? bpf_skc_to_tcp_sock((void *)sk) : NULL;
	now = tp ? packet_time_ns(tp) : 0;
	if (enable_connect)
		record_connect(sk, c, family, result, now);
	if (!now || !(enable_close || enable_events || enable_sidecar)) {
		sock_table_del(key);
		return;
	}
	c->established_ns = now;
	c->family = family;
	c->lport = sk->__sk_common.skc_num;
	if (enable_sidecar && c->side == SIDE_OUTBOUND)
		sidecar_upstream(sk, c);
}

/* The kernel times the handshake's SYN-ACK to the ACK that completes it and
 * keeps it as the connection's first RTT sample; if the SYN-ACK had to be
 * retransmitted, retrans_stamp holds when the first one left. */
static __always_inline __u32 handshake_us(const struct tcp_sock *tp)
{
	__u64 now_us = tp->tcp_mstamp;
	__u32 stamp, usec_ts = 0;

	stamp = tp->retrans_stamp;
	if (tp->total_retrans && stamp) {
		if (bpf_core_field_exists(tp->tcp_usec_ts))
			usec_ts = BPF_CORE_READ_BITFIELD(tp, tcp_usec_ts);
		if (usec_ts)
			return (__u32)now_us - stamp;
		return ((__u32)(now_us / 1000) - stamp) * 1000;
	}
	return tp->srtt_us >> 3;
}

/* SYN_RECV -> ESTABLISHED: a passive open completed, in softirq context. */
static __always_inline void on_passive_established(const struct sock *sk, __u64 key)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock((void *)sk);
	struct conn c = {};

	if (!tp || !sock_allowed(sk, true))
		return;
	c.established_ns = packet_time_ns(tp); /* the ACK was just processed */
	c.handshake_us = handshake_us(tp);
	c.family = family_of(sk);
	c.role = ROLE_SERVER;
	c.lport = sk->__sk_common.skc_num;
	if (key_cgroup || enable_events)
		c.cgroup = sock_cgroup_id(sk);
	/* with sidecars, only theirs need one: sidecar_accept() */
	if (enable_events)
		c.id = next_conn_id();
	track(key, &c);
}

/* accepted: called from the accepting process, whose command is taken;
 * otherwise the connection closed before any process accepted it. */
static __always_inline void record_accept(const struct sock *sk, const struct conn *c, __u64 queue_ns, bool accepted)
{
	struct accept_key k = {.port = c->lport, .family = c->family}, overflow = {.family = c->family};
	struct accept_stats *stats;

	if (key_cgroup)
		k.cgroup = c->cgroup;
	if (accepted) {
		/* a copy from the task's BTF pointer: cheaper than bpf_get_current_comm() */
		struct task_struct *task = bpf_get_current_task_btf();

		__builtin_memcpy(k.comm, task->comm, sizeof(k.comm));
	}
	stats = stats_entry(&tcp_accepts, &k, &overflow, ERR_ACCEPTS_FULL, sk);
	if (!stats)
		return;
	counter_add(&stats->accepted, 1);
	hist_add(&stats->handshake_ns, (__u64)c->handshake_us * 1000);
	if (accepted)
		hist_add(&stats->queue_ns, queue_ns);
}

/* Payload bytes only: the peer's acknowledgements count our SYN (active
 * side) and our FIN, and the receive sequence counts the peer's FIN. */
static __always_inline void payload_bytes(const struct sock *sk, const struct tcp_sock *tp, const struct conn *c,
					  int oldstate, __u64 *sent, __u64 *received)
{
	bool fin_sent;

	*sent = tp->bytes_acked;
	if (c->role == ROLE_CLIENT && *sent)
		(*sent)--;
	fin_sent = oldstate == TCP_FIN_WAIT1 || oldstate == TCP_FIN_WAIT2 || oldstate == TCP_CLOSING ||
		   oldstate == TCP_LAST_ACK || oldstate == TCP_TIME_WAIT;
	if (fin_sent && tp->snd_una == tp->write_seq && *sent)
		(*sent)--;
	*received = tp->bytes_received;
	/* SOCK_DONE: set by tcp_fin() alone, when the peer's FIN arrived */
	if ((sk->__sk_common.skc_flags & (1UL << bpf_core_enum_value(enum sock_flags, SOCK_DONE))) && *received)
		(*received)--;
}

static __always_inline void record_close(const struct tcp_sock *tp, const struct conn *c, __u64 now, __u64 sent,
					 __u64 received)
{
	struct close_key k = {.family = c->family, .role = c->role}, overflow = {.family = c->family, .role = c->role};
	struct close_stats *stats;

	if (key_cgroup)
		k.cgroup = c->cgroup;
	stats = stats_entry(&tcp_closes, &k, &overflow, ERR_CLOSES_FULL, (const struct sock *)tp);
	if (!stats)
		return;
	counter_add(&stats->retransmits, tp->total_retrans);
	hist_add(&stats->lifetime_ns, now - c->established_ns);
	hist_add(&stats->sent_bytes, sent);
	hist_add(&stats->received_bytes, received);
	if (tp->srtt_us)
		hist_add(&stats->srtt_ns, (__u64)(tp->srtt_us >> 3) * 1000);
}

static __always_inline void emit_close(const struct sock *sk, const struct tcp_sock *tp, const struct conn *c,
				       __u64 now, __u64 sent, __u64 received)
{
	struct conn_event *e = new_event(sk, c, EVENT_CLOSE, c->family);

	if (!e)
		return;
	/* a server's SYN arrived just before its SYN-ACK left */
	e->start_ns = c->role == ROLE_CLIENT ? c->start_ns : c->established_ns - (__u64)c->handshake_us * 1000;
	e->established_ns = c->established_ns;
	e->end_ns = now;
	e->sent_bytes = sent;
	e->received_bytes = received;
	e->retransmits = tp->total_retrans;
	e->srtt_us = tp->srtt_us >> 3;
	e->result = CONNECT_ESTABLISHED;
	bpf_ringbuf_submit(e, 0);
}

/* Any state -> CLOSE after the connection was established (or accepted). */
static __always_inline void on_close(const struct sock *sk, __u64 key, int oldstate)
{
	struct conn *cp, c;

	cp = sock_table_get(key);
	if (!cp)
		return;
	c = *cp;
	sock_table_del(key);

	if (c.side == SIDE_INBOUND && !c.forwarded) {
		struct sidecar_stats *st = stats_of_sidecar(c.sidecar - 1);

		/* neither a connect upstream nor an older connection served it */
		if (st)
			counter_add(&st->unpaired, 1);
		nat_forget(&c);
	}
	if (c.role == ROLE_SERVER && !c.accepted) {
		/* closed in the accept queue: no process to judge by a pid filter */
		if (pid_filter_active())
			return;
		if (enable_accept)
			record_accept(sk, &c, 0, false);
	}
	if ((enable_close || enable_events) && c.established_ns) {
		struct tcp_sock *tp = bpf_skc_to_tcp_sock((void *)sk);
		/* a close may follow no packet (an application's reset): read the clock */
		__u64 sent, received, now = bpf_ktime_get_ns();

		if (!tp)
			return;
		payload_bytes(sk, tp, &c, oldstate, &sent, &received);
		if (enable_close)
			record_close(tp, &c, now, sent, received);
		if (enable_events)
			emit_close(sk, tp, &c, now, sent, received);
	}
}

/* The first FIN of an established connection, either way. */
static __always_inline void on_first_fin(__u64 key, __u8 from)
{
	struct conn *c = sock_table_get(key);

	if (c && c->established_ns && !c->fin_ns) {
		c->fin_ns = bpf_ktime_get_ns();
		c->fin_from = from;
	}
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tcp_state, struct sock *sk, int oldstate, int newstate)
{
	__u64 key;

	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	if (newstate != TCP_SYN_SENT && newstate != TCP_ESTABLISHED && newstate != TCP_CLOSE &&
	    !(enable_events && (newstate == TCP_FIN_WAIT1 || newstate == TCP_CLOSE_WAIT)))
		return 0;
	/* the socket's address as a number, to hash: read as such from the
	 * context, since the verifier keeps sk a pointer */
	bpf_probe_read_kernel(&key, sizeof(key), &ctx[0]);

	switch (newstate) {
	case TCP_SYN_SENT:
		if (enable_connect || enable_close || enable_events || enable_sidecar)
			on_syn_sent(sk, key);
		break;
	case TCP_ESTABLISHED:
		/* whoever made it: the sidecar NAT hands it to may be watched */
		if (oldstate == TCP_SYN_SENT && enable_sidecar)
			remember_destination(sk);
		if (oldstate == TCP_SYN_SENT)
			on_connect_outcome(sk, key, true);
		else if (oldstate == TCP_SYN_RECV && (enable_accept || enable_close || enable_events || enable_sidecar))
			on_passive_established(sk, key);
		break;
	case TCP_FIN_WAIT1:
		on_first_fin(key, FIN_LOCAL);
		break;
	case TCP_CLOSE_WAIT:
		on_first_fin(key, FIN_PEER);
		break;
	case TCP_CLOSE:
		if (oldstate == TCP_SYN_SENT)
			on_connect_outcome(sk, key, false);
		else
			on_close(sk, key, oldstate);
		break;
	}
	return 0;
}

/* The socket behind a descriptor of the current process. The task's BTF
 * pointer is walked directly as far as the descriptor array (whose address
 * the verifier gives as a number); an element and what it points to need
 * reads. */
static __always_inline __u64 sock_of_fd(int fd)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct fdtable *fdt = task->files->fdt;
	struct file **fds = fdt->fd, *file;
	struct socket *sock;
	__u64 sk;

	if (fd >= fdt->max_fds || bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file ||
	    bpf_probe_read_kernel(&sock, sizeof(sock), &file->private_data) || !sock ||
	    bpf_probe_read_kernel(&sk, sizeof(sk), &sock->sk))
		return 0;
	return sk;
}

/* The connection (key: its struct sock *) leaves the accept queue for the
 * current process. */
static __always_inline int on_accepted(__u64 key)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid(), now = bpf_ktime_get_ns();
	struct conn *c;
	__u32 tgid;

	if (!key)
		return 0;
	c = sock_table_get(key);
	if (!c || c->role != ROLE_SERVER || c->accepted)
		return 0;
	tgid = pid_tgid >> 32;
	if (!task_allowed(tgid)) {
		sock_table_del(key);
		return 0;
	}
	c->accepted = 1;
	c->tgid = tgid;
	if (enable_events)
		bpf_get_current_comm(c->comm, sizeof(c->comm));
	if (enable_sidecar)
		sidecar_accept(key, c, tgid, (__u32)pid_tgid, now);
	if (enable_accept)
		record_accept((const struct sock *)key, c, now - c->established_ns, true);
	if (!(enable_close || enable_events || enable_sidecar))
		sock_table_del(key);
	return 0;
}

/* Where the kernel has fentry/fexit: the accepted socket as inet_csk_accept()
 * returns it, for accept(), accept4() and io_uring alike, at the cost of one
 * trampoline per accept. Whatever its arguments (they changed in 6.10), the
 * return value is the socket. */
SEC("fexit/inet_csk_accept")
int BPF_PROG(accept_fexit)
{
	__u64 sk = 0;

	bpf_get_func_ret(ctx, &sk);
	return on_accepted(sk);
}

/* Elsewhere: the exits of the accept syscalls, the new descriptor's socket.
 * Enabling syscall tracepoints puts every system call of every task on the
 * tracing slow path, which is why fexit is preferred. */
SEC("tracepoint/syscalls/sys_exit_accept4")
int accept4_exit(struct trace_event_raw_sys_exit *ctx)
{
	return ctx->ret < 0 ? 0 : on_accepted(sock_of_fd(ctx->ret));
}

SEC("tracepoint/syscalls/sys_exit_accept")
int accept_exit(struct trace_event_raw_sys_exit *ctx)
{
	return ctx->ret < 0 ? 0 : on_accepted(sock_of_fd(ctx->ret));
}

/* A sidecar asked netfilter where NAT took its connection on socket key
 * from (getsockopt SO_ORIGINAL_DST, as Envoy, Linkerd and HAProxy do), and
 * got the socket address at addr, user memory: the destination its client
 * asked for, known here also for a client of another host. Queued as
 * nat_enqueue() does, unless it is already. */
static __always_inline void sidecar_original_dst(__u64 key, const void *addr)
{
	struct {
		__u16 family;
		__u16 port; /* network order */
		__u32 v4;   /* IPv4; IPv6: the flow label */
		__u8 v6[16];
	} sa;
	struct endpoint dst = {};
	struct conn *c;
	struct tuple k;

	c = sock_table_get(key);
	if (!c || c->side != SIDE_INBOUND || c->forwarded || c->nat_port || !c->sidecar)
		return;
	if (bpf_probe_read_user(&sa, sizeof(sa), addr)) {
		/* a struct sockaddr_in ends where the user's buffer may */
		if (bpf_probe_read_user(&sa, 8, addr))
			return;
	}
	if (sa.family == AF_INET && c->family == FAMILY_IPV4)
		__builtin_memcpy(dst.addr, &sa.v4, 4);
	else if (sa.family == AF_INET6 && c->family == FAMILY_IPV6)
		__builtin_memcpy(dst.addr, sa.v6, sizeof(dst.addr));
	else
		return;
	dst.port = bpf_ntohs(sa.port);
	dst.family = c->family;
	read_tuple((const struct sock *)key, &k, c->family);
	nat_enqueue(key, c, &k, c->sidecar - 1, &dst);
}

/* netfilter answers SO_ORIGINAL_DST for IPv4 (SOL_IP) and IPv6 (SOL_IPV6) */
#define SO_ORIGINAL_DST 80
#define SOL_IP		0
#define SOL_IPV6	41

/* Where fexit works: netfilter's getsockopt() returned (the socket, its
 * family, the option, the user's buffer, its length, the result). */
SEC("fexit/nf_getsockopt")
int BPF_PROG(sidecar_origdst_fexit, struct sock *sk, __u8 pf, int optval, char *opt, int *len, int ret)
{
	__u64 key;

	if (ret || optval != SO_ORIGINAL_DST)
		return 0;
	bpf_probe_read_kernel(&key, sizeof(key), &ctx[0]);
	sidecar_original_dst(key, opt);
	return 0;
}

/* Elsewhere: the getsockopt() system call's exit, its arguments read from
 * the registers the task entered with (no program on the entry of every
 * system call). */
SEC("tracepoint/syscalls/sys_exit_getsockopt")
int sidecar_getsockopt_exit(struct trace_event_raw_sys_exit *ctx)
{
	struct pt_regs *regs;
	long level, optname;

	if (ctx->ret != 0)
		return 0;
	regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	level = PT_REGS_PARM2_CORE_SYSCALL(regs);
	optname = PT_REGS_PARM3_CORE_SYSCALL(regs);
	if (optname != SO_ORIGINAL_DST || (level != SOL_IP && level != SOL_IPV6))
		return 0;
	sidecar_original_dst(sock_of_fd((int)PT_REGS_PARM1_CORE_SYSCALL(regs)),
			     (const void *)PT_REGS_PARM4_CORE_SYSCALL(regs));
	return 0;
}

/* A thread takes up a sidecar's inbound connection that is not forwarded
 * yet: its next connect (or send) upstream serves that connection. Unless
 * it has read bytes from it (then its request is what the thread works on
 * now), a thread that holds another connection not forwarded yet, which it
 * took by a read, keeps that one: an event loop tries reads on every
 * connection it has. One it only accepted it may have handed to another
 * thread (haproxy accepts several at a time and spreads them): a read of
 * another takes over. */
static __always_inline void sidecar_take(__u64 key, bool read_bytes)
{
	struct thread_inbound t, *held;
	struct conn *c, *other;
	__u32 tid;

	c = sock_table_get(key);
	if (!c || c->side != SIDE_INBOUND || c->forwarded)
		return;
	tid = (__u32)bpf_get_current_pid_tgid();
	held = bpf_map_lookup_elem(&sidecar_threads, &tid);
	if (held && held->key == key && held->id == c->id)
		return;
	if (held && !read_bytes && held->by_read) {
		other = sock_table_get(held->key);
		if (other && other->id == held->id && !other->forwarded)
			return;
	}
	t.key = key;
	t.id = c->id;
	t.accepted_ns = c->accepted_ns;
	t.by_read = 1;
	__builtin_memset(t.pad, 0, sizeof(t.pad));
	bpf_map_update_elem(&sidecar_threads, &tid, &t, BPF_ANY);
}

/* With sidecars: a thread asks to receive from a socket, whether anything
 * is there or not (a thread a proxy hands an accepted connection to tries
 * a read before it connects upstream). Linux 6.3+; loaded with sidecars. */
SEC("tp_btf/sock_recv_length")
int BPF_PROG(sidecar_recv, struct sock *sk, int ret, int flags)
{
	__u64 key;

	if (!in_sidecar_process())
		return 0;
	bpf_probe_read_kernel(&key, sizeof(key), &ctx[0]);
	sidecar_take(key, ret > 0);
	return 0;
}

/* With sidecars, where sock_recv_length is missing: a thread read bytes
 * from a socket. */
SEC("tp_btf/tcp_rcv_space_adjust")
int BPF_PROG(sidecar_read, struct sock *sk)
{
	__u64 key;

	if (!in_sidecar_process())
		return 0;
	bpf_probe_read_kernel(&key, sizeof(key), &ctx[0]);
	sidecar_take(key, true);
	return 0;
}

/* With sidecars: a sidecar thread holding an inbound connection it has not
 * forwarded starts a thread or a process (a thread or a child per
 * connection): the new task serves that connection, and a new process is
 * the same sidecar. Runs in the parent. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(sidecar_fork, struct task_struct *parent, struct task_struct *child)
{
	struct sidecar_fork f = {};
	struct thread_inbound *t, inherited;
	__u32 tid = parent->pid, child_tid = child->pid, child_tgid = child->tgid;
	struct conn *in;

	t = bpf_map_lookup_elem(&sidecar_threads, &tid);
	if (!t)
		return 0;
	in = sock_table_get(t->key);
	if (!in || in->id != t->id || in->forwarded)
		return 0;
	/* held, not read by the new task itself */
	inherited = *t;
	inherited.by_read = 0;
	bpf_map_update_elem(&sidecar_threads, &child_tid, &inherited, BPF_ANY);
	if (child_tgid != parent->tgid) {
		f.sidecar = in->sidecar - 1;
		__builtin_memcpy(f.comm, child->comm, sizeof(f.comm));
		bpf_map_update_elem(&sidecar_forks, &child_tgid, &f, BPF_ANY);
		if (!sidecar_forked)
			sidecar_forked = 1;
		bpf_task_storage_get(&sidecar_processes, child, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	}
	return 0;
}

/* With sidecars: a sidecar sends on an upstream connection older than the
 * inbound one its thread serves: the inbound connection is forwarded over a
 * reused connection, so no connect of its own shows its timing. */
SEC("tp_btf/tcp_sendmsg_locked")
int BPF_PROG(sidecar_send, struct sock *sk)
{
	struct thread_inbound *t = NULL;
	struct sidecar_stats *st;
	struct conn *c, *in;
	__u64 key;

	if (!in_sidecar_process())
		return 0;
	bpf_probe_read_kernel(&key, sizeof(key), &ctx[0]);
	c = sock_table_get(key);
	if (!c || c->side != SIDE_OUTBOUND)
		return 0;
	in = thread_inbound((__u32)bpf_get_current_pid_tgid(), &t);
	if (!in || !t || c->start_ns >= t->accepted_ns)
		return 0;
	/* the connection it was opened for is still open, and another: its
	 * data, not a reuse (a thread that serves several at once) */
	if (c->parent_key && c->parent_key != t->key) {
		struct conn *first = sock_table_get(c->parent_key);

		if (first && first->id == c->parent_id)
			return 0;
	}
	in->forwarded = 1;
	nat_forget(in);
	st = stats_of_sidecar(c->sidecar - 1);
	if (st)
		counter_add(&st->reused, 1);
	return 0;
}

BPFNET_EXPORT(struct conn_event conn_event; struct connect_key connect_key; struct close_key close_key;
	      struct pod_addr pod_addr; struct cgroup_names cgroup_names; enum family family; enum role role;
	      enum connect_result connect_result; enum lifecycle_error lifecycle_error; enum event_kind event_kind;
	      enum fin_from fin_from;);

char LICENSE[] SEC("license") = "Dual BSD/GPL";
