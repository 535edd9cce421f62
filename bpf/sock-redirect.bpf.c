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
 * and any message that could overtake bytes still travelling the stack.
 * To stop, userspace pauses redirect (every message then takes the stack)
 * and detaches; sockets already in the sockhash keep it, and this program,
 * alive until they close, so bytes redirected to them but not yet read are
 * never dropped.
 * Needs kernel 5.10+ (bpf_skc_to_tcp_sock in sk_msg, cgroup links). */
#include "bpfnet.h"
#include "sock-redirect.h"

#define SOCKS_MAX 65536
#define PORTS_MAX 64
#define E2BIG 7

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
 * reaches TCP_CLOSE (or leaves the sockhash early). */
struct member {
	struct sock_key peer;
	__u8 paired;
	__u8 flowing;		/* this socket's messages now go to the peer directly */
	__u8 pad[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SOCKS_MAX);
	__type(key, struct sock_key);
	__type(value, struct member);
} redirect_members SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, REDIRECT_FAMILY_COUNT);
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
		k->family = REDIRECT_IPV4;
	} else if (skops->family == AF_INET6) {
		k->local_ip[0] = skops->local_ip6[0];
		k->local_ip[1] = skops->local_ip6[1];
		k->local_ip[2] = skops->local_ip6[2];
		k->local_ip[3] = skops->local_ip6[3];
		k->remote_ip[0] = skops->remote_ip6[0];
		k->remote_ip[1] = skops->remote_ip6[1];
		k->remote_ip[2] = skops->remote_ip6[2];
		k->remote_ip[3] = skops->remote_ip6[3];
		k->family = v4_mapped(k->remote_ip) ? REDIRECT_IPV4 : REDIRECT_IPV6;
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
	return port_listed(a->local_port) || port_listed(a->remote_port) ||
	       port_listed(b->local_port) || port_listed(b->remote_port);
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
static __always_inline bool join(struct bpf_sock_ops *skops, struct sock_key *k, const struct member *m, int cb_flags)
{
	long err;

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
	struct endpoint ep = { .port = k->local_port, .family = k->family };
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
	struct endpoint ep = { .port = k->remote_port, .family = k->family };
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
	m.paired = 1;
	if (!join(skops, k, &m, 0))
		return;
	pm->peer = *k;
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
		k->family = v4_mapped(k->remote_ip) ? REDIRECT_IPV4 : REDIRECT_IPV6;
		return;
	}
	k->local_ip[0] = k->local_ip[1] = k->remote_ip[0] = k->remote_ip[1] = 0;
	k->local_ip[2] = k->remote_ip[2] = bpf_htonl(0xffff);
	k->local_ip[3] = local4;
	k->remote_ip[3] = remote4;
	k->family = REDIRECT_IPV4;
}

/* Whether this socket ever put payload on the normal stack. If it did, its
 * peer may not have read all of it yet, and the peer reads redirected bytes
 * first: redirecting from now on could reorder the stream. (Only the
 * sender's side can be checked: sk_msg cannot reach the peer's socket.) */
static __always_inline bool stack_used(struct bpf_sock *sk)
{
	struct tcp_sock *tp = sk ? bpf_skc_to_tcp_sock(sk) : NULL;

	return !tp || tp->bytes_sent != 0 || tp->write_seq != tp->snd_nxt;
}

SEC("sk_msg")
int redirect_msg(struct sk_msg_md *msg)
{
	struct redirect_control *ctl;
	struct redirect_stats *s;
	struct sock_key k;
	struct member *m;
	__u32 zero = 0;

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
	if (!m->flowing) {
		if (stack_used(msg->sk)) {
			count_fallback(k.family, FALLBACK_STACK_USED);
			return SK_PASS;
		}
		m->flowing = 1;
	}
	if (bpf_msg_redirect_hash(msg, &redirect_socks, &m->peer, BPF_F_INGRESS) == SK_PASS) {
		s = stats_of(k.family);
		if (s) {
			counter_add(&s->messages, 1);
			counter_add(&s->bytes, msg->size);
		}
		return SK_PASS;
	}
	/* this message takes the stack, so no later one may overtake it */
	m->flowing = 0;
	count_fallback(k.family, bpf_map_lookup_elem(&redirect_members, &m->peer) ? FALLBACK_REDIRECT_FAILED
										    : FALLBACK_PEER_MISSING);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
