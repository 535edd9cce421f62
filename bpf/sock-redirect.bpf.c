// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* Socket redirect: TCP connections whose two ends are on this host skip the
 * TCP/IP stack.
 *
 * A sockops program on a cgroup v2 puts established sockets into a sockhash
 * and pairs the two ends of a connection: the connecting end is inserted when
 * it is established; the accepting end, established just after, looks for it
 * (the mirror of its own 4-tuple, or, when NAT sent the connection to a local
 * proxy, the socket that connected from the same client address and port)
 * and is inserted only if it is found. An sk_msg program on the sockhash then
 * hands each message of a paired socket straight to its peer's receive queue.
 * Everything else takes the normal stack: unpaired sockets, paused redirect,
 * any message that could overtake bytes still travelling the stack, and the
 * messages of a sender whose reader has fallen behind: redirected bytes wait
 * in the reader's psock, charged to no socket buffer, so the stack's flow
 * control is what holds such a sender back (backpressure).
 * To stop, userspace pauses redirect (every message then takes the stack)
 * and detaches; sockets already in the sockhash keep it, and this program,
 * alive until they close, so bytes redirected to them but not yet read are
 * never dropped.
 * Needs kernel 5.10+ (bpf_skc_to_tcp_sock in sk_msg, cgroup links); what a
 * reader has not read is read from its psock with CO-RE (msg_tot_len where
 * the kernel has it, as 6.18 and Debian's 6.12 do; else the psock's queue of
 * messages is walked, as on 6.1). */
#include "bpfnet.h"
#include "sock-redirect.h"

#define SOCKS_MAX 65536
#define PORTS_MAX 64
#define E2BIG	  7

/* with --redirect-ports: only pairs with one of these ports (local or remote,
 * either end) are redirected */
const volatile bool ports_filtered = false;

/* key_size/value_size rather than __type: a sockhash takes no BTF key and
 * value types on some kernels. Userspace reads struct sock_key through the
 * BTF of redirect_origins. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, SOCKS_MAX);
	__uint(key_size, sizeof(struct sock_key));
	__uint(value_size, sizeof(__u64));
} redirect_socks SEC(".maps");

/* A client address and port. */
struct endpoint {
	__u32 ip[4];
	__u16 port;
	__u16 family;
};

/* The connecting socket that last used an endpoint. Two live ones (a port
 * the kernel shares between destinations) make the endpoint ambiguous, and
 * an ambiguous endpoint pairs nothing. */
struct origin {
	struct sock_key key;
	__u32 ambiguous;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SOCKS_MAX);
	__type(key, struct endpoint);
	__type(value, struct origin);
} redirect_origins SEC(".maps");

/* A socket in the sockhash, by its key: its peer once paired. A parallel
 * map because sockops and sk_msg programs cannot look sockets up in a
 * sockhash (they cannot release the reference). Removed when the socket
 * reaches TCP_CLOSE (or leaves the sockhash early). The sockets' addresses
 * are kept to read their psocks (bpf_probe_read_kernel, which survives a
 * socket that is gone: a psock that does not point back is ignored). */
struct member {
	struct sock_key peer;
	__u64 sk;	     /* this socket's struct sock, and its peer's: */
	__u64 peer_sk;	     /* read, never trusted, to see what the peer has not read */
	__u64 pressure_seen; /* jiffies when its memory cgroup's pressure was last looked at */
	__u8 paired;
	__u8 flowing;  /* this socket's messages now go to the peer directly */
	__u8 pressure; /* what was seen then */
	__u8 pad[5];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SOCKS_MAX);
	__type(key, struct sock_key);
	__type(value, struct member);
} redirect_members SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FAMILY_COUNT);
	__type(key, __u32);
	__type(value, struct redirect_stats);
} redirect_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct redirect_control);
} redirect_control SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PORTS_MAX);
	__type(key, __u16);
	__type(value, __u8);
} redirect_ports SEC(".maps");

static __always_inline struct redirect_stats *stats_of(__u32 family)
{
	return bpf_map_lookup_elem(&redirect_stats, &family);
}

static __always_inline void count_fallback(__u32 family, __u32 reason)
{
	struct redirect_stats *s = stats_of(family);

	if (s && reason < FALLBACK_REASON_COUNT)
		counter_add(&s->fallbacks[reason], 1);
}

static __always_inline bool v4_mapped(const __u32 ip[4])
{
	return ip[0] == 0 && ip[1] == 0 && ip[2] == bpf_htonl(0xffff);
}

/* The key of the socket behind skops; false for non-IP families. */
static __always_inline bool skops_key(struct bpf_sock_ops *skops, struct sock_key *k)
{
	__builtin_memset(k, 0, sizeof(*k));
	if (skops->family == AF_INET) {
		k->local_ip[2] = bpf_htonl(0xffff);
		k->local_ip[3] = skops->local_ip4;
		k->remote_ip[2] = bpf_htonl(0xffff);
		k->remote_ip[3] = skops->remote_ip4;
		k->family = FAMILY_IPV4;
	} else if (skops->family == AF_INET6) {
		k->local_ip[0] = skops->local_ip6[0];
		k->local_ip[1] = skops->local_ip6[1];
		k->local_ip[2] = skops->local_ip6[2];
		k->local_ip[3] = skops->local_ip6[3];
		k->remote_ip[0] = skops->remote_ip6[0];
		k->remote_ip[1] = skops->remote_ip6[1];
		k->remote_ip[2] = skops->remote_ip6[2];
		k->remote_ip[3] = skops->remote_ip6[3];
		k->family = v4_mapped(k->remote_ip) ? FAMILY_IPV4 : FAMILY_IPV6;
	} else {
		return false;
	}
	k->local_port = skops->local_port;
	k->remote_port = bpf_ntohl(skops->remote_port);
	return true;
}

static __always_inline void mirror(const struct sock_key *k, struct sock_key *m)
{
	__builtin_memcpy(m->local_ip, k->remote_ip, sizeof(m->local_ip));
	__builtin_memcpy(m->remote_ip, k->local_ip, sizeof(m->remote_ip));
	m->local_port = k->remote_port;
	m->remote_port = k->local_port;
	m->family = k->family;
}

static __always_inline bool same_key(const struct sock_key *a, const struct sock_key *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;

	/* 40 bytes, as five words: no memcmp in BPF */
	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3] && x[4] == y[4];
}

static __always_inline bool port_listed(__u16 port)
{
	return bpf_map_lookup_elem(&redirect_ports, &port) != NULL;
}

static __always_inline bool pair_allowed(const struct sock_key *a, const struct sock_key *b)
{
	if (!ports_filtered)
		return true;
	return port_listed(a->local_port) || port_listed(a->remote_port) || port_listed(b->local_port) ||
	       port_listed(b->remote_port);
}

static __always_inline void count_map_full(__u32 family)
{
	struct redirect_stats *s = stats_of(family);

	if (s)
		counter_add(&s->map_full, 1);
}

/* Puts the socket behind skops into the sockhash (and its member entry) and
 * asks for its state changes, and for the callbacks in cb_flags; false if
 * either map is full. */
static __always_inline bool join(struct bpf_sock_ops *skops, struct sock_key *k, struct member *m, int cb_flags)
{
	long err;

	m->sk = (__u64)skops->sk;
	if (bpf_map_update_elem(&redirect_members, k, m, BPF_ANY)) {
		count_map_full(k->family);
		return false;
	}
	err = bpf_sock_hash_update(skops, &redirect_socks, k, BPF_ANY);
	if (err) {
		bpf_map_delete_elem(&redirect_members, k);
		if (err == -E2BIG)
			count_map_full(k->family);
		return false;
	}
	/* TCP_CLOSE: time to forget it */
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG | cb_flags);
	return true;
}

static __always_inline void leave(struct sock_key *k)
{
	bpf_map_delete_elem(&redirect_socks, k);
	bpf_map_delete_elem(&redirect_members, k);
}

/* The connecting end: into the sockhash, to be paired by the accepting end
 * if that is here too. Its endpoint is remembered for NAT pairing. */
static __always_inline void active_established(struct bpf_sock_ops *skops, struct sock_key *k)
{
	struct endpoint ep = {.port = k->local_port, .family = k->family};
	struct origin fresh = {};
	struct member m = {};
	struct origin *o;

	/* an RTT sample means bytes went through the stack and were acked:
	 * then it is time to see whether this socket found a peer */
	if (!join(skops, k, &m, BPF_SOCK_OPS_RTT_CB_FLAG))
		return;

	__builtin_memcpy(ep.ip, k->local_ip, sizeof(ep.ip));
	/* a second live socket from this endpoint: NAT pairing would be a guess */
	o = bpf_map_lookup_elem(&redirect_origins, &ep);
	if (o && !same_key(&o->key, k) && bpf_map_lookup_elem(&redirect_members, &o->key)) {
		o->ambiguous = 1;
		return;
	}
	fresh.key = *k;
	bpf_map_update_elem(&redirect_origins, &ep, &fresh, BPF_ANY);
}

/* The connecting end of the connection k accepted: its mirror, or the socket
 * that connected from k's client endpoint to an address NAT rewrote. */
static __always_inline struct member *find_peer(const struct sock_key *k, struct sock_key *peer)
{
	struct endpoint ep = {.port = k->remote_port, .family = k->family};
	struct member *pm;
	struct origin *o;

	mirror(k, peer);
	pm = bpf_map_lookup_elem(&redirect_members, peer);
	if (pm)
		return pm;
	__builtin_memcpy(ep.ip, k->remote_ip, sizeof(ep.ip));
	o = bpf_map_lookup_elem(&redirect_origins, &ep);
	if (!o || o->ambiguous)
		return NULL;
	*peer = o->key;
	return bpf_map_lookup_elem(&redirect_members, peer);
}

/* The accepting end: pairs with the connecting end if that is in the sockhash. */
static __always_inline void passive_established(struct bpf_sock_ops *skops, struct sock_key *k)
{
	struct redirect_stats *s;
	struct sock_key peer;
	struct member m = {};
	struct member *pm;

	pm = find_peer(k, &peer);
	if (!pm || pm->paired)
		return;
	if (!pair_allowed(k, &peer)) {
		/* the connecting end need not pay for the sockhash either */
		leave(&peer);
		return;
	}
	m.peer = peer;
	m.peer_sk = pm->sk;
	m.paired = 1;
	if (!join(skops, k, &m, 0))
		return;
	pm->peer = *k;
	pm->peer_sk = m.sk;
	/* the peer's sk_msg may run now: its peer key must be whole first */
	barrier();
	pm->paired = 1;
	s = stats_of(k->family);
	if (s)
		counter_add(&s->connections, 1);
}

/* Bytes of a connecting end went through the stack and were acked: if it
 * has no peer by now, its peer is elsewhere; take it out of the sockhash so
 * that it no longer pays for sk_msg. */
static __always_inline void rtt_sampled(struct bpf_sock_ops *skops, struct sock_key *k)
{
	struct member *m = bpf_map_lookup_elem(&redirect_members, k);

	if (!m || !m->paired)
		leave(k);
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags & ~BPF_SOCK_OPS_RTT_CB_FLAG);
}

SEC("sockops")
int redirect_sockops(struct bpf_sock_ops *skops)
{
	struct sock_key k;
	__u32 op = skops->op;

	if (op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB &&
	    op != BPF_SOCK_OPS_RTT_CB && op != BPF_SOCK_OPS_STATE_CB)
		return 1;
	if (op == BPF_SOCK_OPS_STATE_CB && skops->args[1] != BPF_TCP_CLOSE)
		return 1;
	if (!skops_key(skops, &k))
		return 1;
	if (op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB)
		active_established(skops, &k);
	else if (op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		passive_established(skops, &k);
	else if (op == BPF_SOCK_OPS_RTT_CB)
		rtt_sampled(skops, &k);
	else
		bpf_map_delete_elem(&redirect_members, &k);
	return 1;
}

/* The key of the socket sending msg, as skops_key() makes it. Every field
 * is read whatever the family: reads under a branch would be merged by clang
 * into one load at a computed offset, which the verifier refuses for context
 * pointers. */
static __always_inline void msg_key(struct sk_msg_md *msg, struct sock_key *k)
{
	__u32 family = msg->family, local4 = msg->local_ip4, remote4 = msg->remote_ip4;

	k->local_ip[0] = msg->local_ip6[0];
	k->local_ip[1] = msg->local_ip6[1];
	k->local_ip[2] = msg->local_ip6[2];
	k->local_ip[3] = msg->local_ip6[3];
	k->remote_ip[0] = msg->remote_ip6[0];
	k->remote_ip[1] = msg->remote_ip6[1];
	k->remote_ip[2] = msg->remote_ip6[2];
	k->remote_ip[3] = msg->remote_ip6[3];
	k->local_port = msg->local_port;
	k->remote_port = bpf_ntohl(msg->remote_port);
	if (family == AF_INET6) {
		k->family = v4_mapped(k->remote_ip) ? FAMILY_IPV4 : FAMILY_IPV6;
		return;
	}
	k->local_ip[0] = k->local_ip[1] = k->remote_ip[0] = k->remote_ip[1] = 0;
	k->local_ip[2] = k->remote_ip[2] = bpf_htonl(0xffff);
	k->local_ip[3] = local4;
	k->remote_ip[3] = remote4;
	k->family = FAMILY_IPV4;
}

/* The psock of a socket in the sockhash (its sk_user_data, flag bits off),
 * or NULL if sk has none now (gone from the sockhash, or freed: sockets
 * are read, never trusted, so the psock must point back at sk). */
static __always_inline struct sk_psock *psock_of(struct sock *sk)
{
	struct sk_psock *psock;

	if (!sk)
		return NULL;
	psock = (struct sk_psock *)((unsigned long)BPF_CORE_READ(sk, sk_user_data) & ~7UL);
	if (!psock || BPF_CORE_READ(psock, sk) != sk)
		return NULL;
	return psock;
}

#define INGRESS_WALK_MAX 256

/* Bytes redirected to the psock's socket and not read by it yet. Kernels
 * without psock->msg_tot_len (6.1) get the sum over its queue of
 * messages, walked as far as INGRESS_WALK_MAX of them; *more says whether
 * the queue went on (then the sum is a lower bound). */
static __always_inline __u64 unread(struct sk_psock *psock, bool *more)
{
	struct list_head *head, *pos;
	__u64 total = 0;

	*more = false;
	if (bpf_core_field_exists(psock->msg_tot_len))
		return BPF_CORE_READ(psock, msg_tot_len);
	head = (struct list_head *)((void *)psock + bpf_core_field_offset(psock->ingress_msg));
	pos = BPF_CORE_READ(head, next);
	for (int i = 0; i < INGRESS_WALK_MAX && pos && pos != head; i++) {
		struct sk_msg *m = (struct sk_msg *)((void *)pos - bpf_core_field_offset(struct sk_msg, list));

		total += BPF_CORE_READ(m, sg.size);
		pos = BPF_CORE_READ(pos, next);
	}
	*more = pos && pos != head;
	return total;
}

/* Whether every byte this socket sent through the stack has been read by
 * its peer. The peer reads redirected bytes before stack bytes, so a
 * redirected message must not overtake unread stack bytes. Without the
 * peer's socket, only a socket that never used the stack qualifies. */
static __always_inline bool stack_drained(struct tcp_sock *tp, struct sock *peer)
{
	if (!tp)
		return false;
	if (!peer)
		return tp->bytes_sent == 0 && tp->write_seq == tp->snd_nxt;
	return BPF_CORE_READ((struct tcp_sock *)peer, copied_seq) == tp->write_seq;
}

#define MEMCG_DEPTH_MAX 5

/* Whether the memory cgroup that the peer's socket memory is charged to, or
 * one of its ancestors (a pod's, its QoS class'), reclaimed recently: the
 * kernel then holds socket buffers back, and could refuse to charge a
 * redirected message. Cgroup v2 (v1 charges sockets only with a TCP limit). */
static __always_inline bool memcg_pressure(struct sock *peer)
{
	struct mem_cgroup *memcg = BPF_CORE_READ(peer, sk_memcg);
	__u64 now = bpf_jiffies64();

	if (!bpf_core_field_exists(memcg->socket_pressure))
		return false;
	for (int i = 0; i < MEMCG_DEPTH_MAX && memcg; i++) {
		if (now < (__u64)BPF_CORE_READ(memcg, socket_pressure))
			return true;
		/* css is a mem_cgroup's first member */
		memcg = (struct mem_cgroup *)BPF_CORE_READ(memcg, css.parent);
	}
	return false;
}

#define PAGE_SHIFT 12

/* Whether TCP memory is, or with size more bytes would be, where the kernel
 * starts to watch it: the host's at net.ipv4.tcp_mem[0] (from tcp_mem[1]
 * on it refuses a socket more than its share, on the message that crosses
 * the line too, so the program turns away earlier), checked on every
 * message; or that of the peer's memory cgroup, which reclaimed recently,
 * checked once a jiffy per socket (a cgroup's pressure lasts a second, and
 * its walk is a dozen reads). */
static __always_inline bool under_pressure(struct tcp_sock *tp, struct member *m, struct sock *peer, __u32 size)
{
	struct proto *prot = tp->inet_conn.icsk_inet.sk.__sk_common.skc_prot;
	long allocated = 0, low = 0;
	unsigned long on = 0;
	__u64 now;

	bpf_probe_read_kernel(&on, sizeof(on), prot->memory_pressure);
	bpf_probe_read_kernel(&allocated, sizeof(allocated), prot->memory_allocated);
	bpf_probe_read_kernel(&low, sizeof(low), prot->sysctl_mem);
	if (on || allocated + (size >> PAGE_SHIFT) + 1 >= low)
		return true;
	now = bpf_jiffies64();
	if (now != m->pressure_seen) {
		m->pressure = memcg_pressure(peer);
		m->pressure_seen = now;
	}
	return m->pressure;
}

#define SOCK_SNDBUF_LOCK 1

/* The send buffer the stack would give this socket: the one its application
 * set (SO_SNDBUF), else the most autotuning grows it to (tcp_wmem[2] of its
 * network namespace). A redirected socket's own stays where it started (a
 * few hundred KiB on a veth pair): autotuning follows acknowledgements, and
 * redirected bytes get none. */
static __always_inline __u64 send_buffer(struct tcp_sock *tp)
{
	struct sock *sk = &tp->inet_conn.icsk_inet.sk;
	__u64 sndbuf = sk->sk_sndbuf, most;

	if (BPF_CORE_READ_BITFIELD(sk, sk_userlocks) & SOCK_SNDBUF_LOCK)
		return sndbuf;
	most = sk->__sk_common.skc_net.net->ipv4.sysctl_tcp_wmem[2];
	return most > sndbuf ? most : sndbuf;
}

/* Why a message may not be redirected to peer now (0: it may). On the stack
 * a sender gets at most its send buffer and its reader's receive buffer
 * ahead of the reader. Redirected bytes wait unread in the peer's psock,
 * which no buffer limits, so past that much the stack takes over, and its
 * flow control blocks the sender. The receive buffer counts up to twice the
 * send buffer: autotuning grows it to tens of MiB for a fast reader, and a
 * psock that holds that much (Linux 6.18 counts it in the reader's receive
 * memory) leaves the stack no room for the window it offered: it drops what
 * arrives and waits for a retransmission timeout (200 ms).
 * Under TCP memory pressure the stack takes over too: there a redirect
 * could be refused after the verdict, which the sender would see as ENOMEM,
 * where the stack would wait. */
static __always_inline __u32 peer_refuses(struct tcp_sock *tp, struct member *m, struct sock *peer,
					  struct sk_psock *psock, __u32 size)
{
	__u64 sndbuf = send_buffer(tp);
	__u64 rcvbuf = BPF_CORE_READ(peer, sk_rcvbuf);
	bool more;

	if (unread(psock, &more) >= sndbuf + (rcvbuf < 2 * sndbuf ? rcvbuf : 2 * sndbuf) || more)
		return FALLBACK_RECEIVER_FULL;
	if (under_pressure(tp, m, peer, size))
		return FALLBACK_MEMORY_PRESSURE;
	return 0;
}

SEC("sk_msg")
int redirect_msg(struct sk_msg_md *msg)
{
	struct redirect_control *ctl;
	struct redirect_stats *s;
	struct sk_psock *psock;
	struct tcp_sock *tp;
	struct sock *peer;
	struct sock_key k;
	struct member *m;
	__u32 zero = 0, why;

	msg_key(msg, &k);
	m = bpf_map_lookup_elem(&redirect_members, &k);
	if (!m || !m->paired) {
		count_fallback(k.family, FALLBACK_PEER_MISSING);
		return SK_PASS;
	}
	ctl = bpf_map_lookup_elem(&redirect_control, &zero);
	if (!ctl || ctl->paused) {
		m->flowing = 0;
		count_fallback(k.family, FALLBACK_POLICY);
		return SK_PASS;
	}
	tp = msg->sk ? bpf_skc_to_tcp_sock(msg->sk) : NULL;
	peer = (struct sock *)m->peer_sk;
	psock = psock_of(peer);
	if (!m->flowing && !stack_drained(tp, psock ? peer : NULL)) {
		count_fallback(k.family, FALLBACK_STACK_USED);
		return SK_PASS;
	}
	why = !tp || !psock ? FALLBACK_PEER_MISSING : peer_refuses(tp, m, peer, psock, msg->size);
	if (why) {
		/* this message takes the stack, so no later one may overtake it */
		m->flowing = 0;
		count_fallback(k.family, why);
		return SK_PASS;
	}
	m->flowing = 1;
	if (bpf_msg_redirect_hash(msg, &redirect_socks, &m->peer, BPF_F_INGRESS) == SK_PASS) {
		s = stats_of(k.family);
		if (s) {
			counter_add(&s->messages, 1);
			counter_add(&s->bytes, msg->size);
		}
		return SK_PASS;
	}
	m->flowing = 0;
	count_fallback(k.family, bpf_map_lookup_elem(&redirect_members, &m->peer) ? FALLBACK_REDIRECT_FAILED
										  : FALLBACK_PEER_MISSING);
	return SK_PASS;
}

static long add_queued(struct bpf_map *map, struct sock_key *k, struct member *m, struct redirect_queued *sum)
{
	struct sk_psock *psock = psock_of((struct sock *)m->sk);
	__u32 f = k->family;
	bool more;
	__u64 n;

	if (!psock || f >= FAMILY_COUNT)
		return 0;
	n = unread(psock, &more);
	sum->bytes[f] += n;
	if (n > sum->max[f])
		sum->max[f] = n;
	return 0;
}

/* Run by userspace at scrape time (BPF_PROG_TEST_RUN, the result written
 * back into its context): what the sockets in the sockhash hold unread. */
SEC("syscall")
int redirect_queued_sum(struct redirect_queued *out)
{
	struct redirect_queued sum = {};

	bpf_for_each_map_elem(&redirect_members, add_queued, &sum, 0);
	/* unrolled: the verifier wants constant offsets into the context */
#pragma clang loop unroll(full)
	for (int f = 0; f < FAMILY_COUNT; f++) {
		out->bytes[f] = sum.bytes[f];
		out->max[f] = sum.max[f];
	}
	return 0;
}

BPFNET_EXPORT(enum family family; enum fallback_reason fallback_reason; struct redirect_queued queued;);

char LICENSE[] SEC("license") = "Dual BSD/GPL";
