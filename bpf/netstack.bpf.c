// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* The network subsystem probe: how long packets spend between points of the
 * kernel's network stack, as histograms by stage and interface; drops by the
 * kernel's reason; TCP resets and retransmitted segments.
 *
 * A packet is followed by its skb's address from point to point: each point
 * takes the time since the previous one as a sample of the stage between
 * them, and moves the entry on. Where the kernel hands a packet on within one
 * call on one CPU, the entry is a per-CPU slot (or ring); across CPUs and
 * time (a TCP segment on its way to its socket, a packet a qdisc holds) it
 * is in an LRU map, whose entries of packets that never reach the next point
 * are evicted, oldest first; from its socket to its read, in the socket's
 * storage. Memory stays bounded.
 * The tracepoints are all tp_btf (BTF and kernel 5.5+; drop reasons 5.17+;
 * socket storage from tracing programs 5.11+). */
#include "bpfnet.h"
#include "filter.h"
#include "netstack.h"

#define ETH_P_IPV6 0x86DD

/* where a followed packet was last seen */
enum point { POINT_DEVICE, POINT_STACK, POINT_SOCKET, POINT_QUEUED, POINT_XMIT };

struct pkt {
	__u64 ts;
	__u64 dev;   /* struct net_device * where the stage began (for its name) */
	__u64 sk;    /* struct sock * (transmit) */
	__u32 netns; /* of the device */
	__u32 ifindex;
	__u32 point;
};

/* Transmit without a hash map: a device without a queue (veth, loopback,
 * most containers' interfaces) is handed the packet in the call that queued
 * it, on the same CPU, and the driver is done with it before that call
 * returns. Slot TX_QUEUED: the packet last seen at net_dev_queue; TX_DRIVER:
 * the one the driver was last handed. Only a packet a qdisc holds (seen at
 * qdisc_enqueue) goes to netstack_tx, to be found on any CPU. */
enum { TX_QUEUED, TX_DRIVER, TX_SLOTS };

struct tx_slot {
	__u64 skb;
	struct pkt p;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TX_SLOTS);
	__type(key, __u32);
	__type(value, struct tx_slot);
} netstack_tx_cpu SEC(".maps");

/* set by userspace on kernels without qdisc:qdisc_enqueue: then every
 * transmitted packet goes to netstack_tx */
const volatile bool tx_always_hashed = false;

/* Receive without a hash map up to the stack: a driver's packet (netif_rx:
 * into this CPU's backlog; napi_gro_receive: in this CPU's poll) reaches
 * netif_receive_skb on the same CPU, in order. This CPU's ring keeps the
 * packets handed over and not yet taken; only TCP segments, whose socket
 * stages follow on whichever CPU reads them, go on to netstack_rx. */
#define RX_RING	     256 /* a power of two */
#define RX_RING_SEEK 4	 /* packets a ring lookup skips (merged by GRO, dropped) */

struct rx_entry {
	__u64 skb;
	struct pkt p;
};

struct rx_ring {
	__u32 head; /* the oldest packet not taken */
	__u32 tail; /* where the next one goes */
	struct rx_entry e[RX_RING];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rx_ring);
} netstack_rx_cpu SEC(".maps");

/* received packets in flight, and transmitted ones a qdisc holds, by skb
 * address: apart, since a veth hands the very skb it transmits to its
 * peer's receive path. One LRU list for all CPUs: an insert and a delete
 * cost 40 % less here than with per-CPU lists (BENCHMARKS.md). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct pkt);
} netstack_rx SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct pkt);
} netstack_tx SEC(".maps");

/* TCP sockets with a send call not yet seen at a device: when it started
 * (0: none). Storage of the socket itself: found without a hash, freed with
 * the socket. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} netstack_sends SEC(".maps");

/* TCP segments that reached their established socket and wait for their
 * first read: a few per socket, in the socket's storage, matched at the read
 * by sequence number. A segment the receive queue merged into the one
 * before it (freed without a tracepoint) is cleared when that one is read,
 * instead of staying in a hash until evicted. More unread segments than
 * slots: the oldest is forgotten (its socket_to_read is not timed). */
#define SK_RX_SLOTS 8

struct rx_seg {
	__u32 seq;
	__u32 end_seq;
	struct pkt p; /* p.ts 0: a free slot */
};

struct sk_rx {
	struct rx_seg e[SK_RX_SLOTS];
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sk_rx);
} netstack_sk_rx SEC(".maps");

/* with --pid: sockets a listed process has sent or read on, by address, with
 * their inode number (a socket at the address of a closed one has another) */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u64);
} netstack_pid_socks SEC(".maps");

/* the metrics: allocated as series appear, each a value per CPU */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 2048);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct stage_key);
	__type(value, struct stage_stats);
} netstack_latency SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct drop_key);
	__type(value, struct drop_stats);
} netstack_drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FAMILY_COUNT);
	__type(key, __u32);
	__type(value, struct tcp_event_stats);
} netstack_tcp SEC(".maps");

/* samples and drops not counted because their map was full */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NS_ERR_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} netstack_errors SEC(".maps");

static const struct stage_stats zero_stage;
static const struct drop_stats zero_drop;

static __always_inline void count_error(__u32 err)
{
	__u64 *n = bpf_map_lookup_elem(&netstack_errors, &err);

	if (n)
		counter_add(n, 1);
}

/* skb->dev shares its place with dev_scratch (UDP uses it once a datagram is
 * queued): only a kernel address is a device */
static __always_inline struct net_device *skb_dev(const struct sk_buff *skb)
{
	struct net_device *dev = BPF_CORE_READ(skb, dev);

	return (long)dev < 0 ? dev : NULL;
}

static __always_inline __u32 dev_netns(const struct net_device *dev)
{
	return dev ? BPF_CORE_READ(dev, nd_net.net, ns.inum) : 0;
}

/* Where a packet is, read straight from the kernel's pointers (the hot
 * paths' tracepoints hand over an skb whose dev is a device). */
static __always_inline void locate(struct pkt *p, struct net_device *dev)
{
	p->dev = (__u64)dev;
	p->netns = dev ? dev->nd_net.net->ns.inum : 0;
	p->ifindex = dev ? dev->ifindex : 0;
}

/* The --netns filter, with the settings already looked up. */
static __always_inline bool netns_passes(const struct filter_config *cfg, __u32 netns)
{
	return !cfg || !cfg->netns || bpf_map_lookup_elem(&filter_netns, &netns);
}

static __always_inline __u32 sk_netns(const struct sock *sk)
{
	return sk ? BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum) : 0;
}

/* The --netns filter alone: what can be judged before a packet has a socket. */
static __always_inline bool netns_allowed(__u32 netns)
{
	return netns_passes(filters(), netns);
}

/* The inode number of a socket's file: unique among open sockets, and not
 * the same for the next socket at a freed one's address. */
static __always_inline __u64 sock_ino(const struct sock *sk)
{
	return BPF_CORE_READ(sk, sk_socket, file, f_inode, i_ino);
}

/* Every filter: the namespace of the packet's device, and the socket's
 * cgroup, ports and process (a packet without a socket passes none of
 * those three). */
static __always_inline bool packet_allowed(const struct sock *sk, __u32 netns)
{
	struct filter_config *cfg = filters();
	__u64 key = (__u64)sk, *ino;

	if (!cfg)
		return true;
	if (cfg->netns && !bpf_map_lookup_elem(&filter_netns, &netns))
		return false;
	if (!cfg->cgroup && !cfg->port && !cfg->pid)
		return true;
	if (!sk)
		return false;
	if (cfg->cgroup && !cgroup_allowed(sk))
		return false;
	if (cfg->port && !ports_allowed(sk))
		return false;
	if (!cfg->pid)
		return true;
	ino = bpf_map_lookup_elem(&netstack_pid_socks, &key);
	return ino && *ino == sock_ino(sk);
}

/* In process context: remember a socket the current process uses, when
 * --pid lists it. */
static __always_inline void note_process(const struct sock *sk)
{
	__u64 key = (__u64)sk, ino;

	if (pid_filter_active() && task_allowed(bpf_get_current_pid_tgid() >> 32)) {
		ino = sock_ino(sk);
		bpf_map_update_elem(&netstack_pid_socks, &key, &ino, BPF_ANY);
	}
}

/* One sample of a stage that began at p and ended now. */
static __always_inline void observe(const struct pkt *p, __u32 direction, __u32 stage, __u64 start, __u64 now,
				    const struct sock *sk)
{
	struct net_device *dev = (struct net_device *)p->dev;
	struct stage_key key = {.direction = direction, .stage = stage, .netns = p->netns, .ifindex = p->ifindex};
	struct stage_stats *s;

	if (!packet_allowed(sk, key.netns))
		return;
	s = bpf_map_lookup_elem(&netstack_latency, &key);
	if (!s) {
		bpf_map_update_elem(&netstack_latency, &key, &zero_stage, BPF_NOEXIST);
		s = bpf_map_lookup_elem(&netstack_latency, &key);
		if (!s) {
			count_error(NS_ERR_NETSTACK_LATENCY);
			return;
		}
		if (dev)
			bpf_core_read_str(s->ifname, sizeof(s->ifname), &dev->name);
	}
	hist_add(&s->ns, now - start);
	s->last_ns = now; /* for userspace to forget series of interfaces gone */
}

/* ---- receive ------------------------------------------------------------ */

static __always_inline struct rx_ring *rx_ring(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&netstack_rx_cpu, &zero);
}

/* A driver hands a packet to the stack (or to its backlog queue). */
static __always_inline void rx_start(const struct sk_buff *skb)
{
	struct rx_ring *r = rx_ring();
	struct rx_entry *e;
	__u32 netns;

	if (!r)
		return;
	netns = skb->dev ? skb->dev->nd_net.net->ns.inum : 0;
	if (!netns_allowed(netns))
		return;
	/* full: the oldest is forgotten (its device stage is not timed) */
	if (r->tail - r->head >= RX_RING)
		r->head = r->tail - RX_RING + 1;
	e = &r->e[r->tail & (RX_RING - 1)];
	e->skb = (__u64)skb;
	locate(&e->p, skb->dev);
	e->p.ts = bpf_ktime_get_ns();
	e->p.point = POINT_DEVICE;
	r->tail++;
}

/* The packet's entry in this CPU's ring, taken out; NULL if not there. */
static __always_inline struct rx_entry *rx_take(__u64 skb)
{
	struct rx_ring *r = rx_ring();
	struct rx_entry *e;

	if (!r)
		return NULL;
	for (int i = 0; i < RX_RING_SEEK; i++) {
		if (r->head == r->tail)
			return NULL;
		e = &r->e[r->head & (RX_RING - 1)];
		r->head++;
		if (e->skb == skb)
			return e;
	}
	return NULL;
}

/* Whether the packet at the stack's door is a TCP segment with payload: the
 * only packets whose socket stages can end in a read. Pure ACKs (half the
 * packets of a bulk transfer) are left alone: followed, each would cost a
 * hash insert and stay until evicted. IPv4's protocol or IPv6's first next
 * header; a GRO packet's IPv4 length is the merged one, 0 under BIG TCP. */
static __always_inline bool tcp_with_payload(const struct sk_buff *skb)
{
	unsigned char *l3 = skb->data;
	__u8 h[10], tcp_off = 0;
	__u32 len, l4;

	if (skb->protocol == bpf_htons(0x0800)) {
		if (bpf_probe_read_kernel(h, 10, l3) || h[9] != IPPROTO_TCP)
			return false;
		len = (__u32)h[2] << 8 | h[3];
		l4 = (h[0] & 0xf) * 4;
		if (len == 0)
			return true;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		if (bpf_probe_read_kernel(h, 8, l3) || h[6] != IPPROTO_TCP)
			return false;
		len = ((__u32)h[4] << 8 | h[5]) + 40;
		l4 = 40;
		if (len == 40)
			return true; /* a jumbogram's or BIG TCP's */
	} else {
		return false;
	}
	if (bpf_probe_read_kernel(&tcp_off, 1, l3 + l4 + 12))
		return false;
	return len > l4 + (tcp_off >> 4) * 4;
}

SEC("tp_btf/netif_rx")
int BPF_PROG(rx_netif_rx, struct sk_buff *skb)
{
	rx_start(skb);
	return 0;
}

SEC("tp_btf/napi_gro_receive_entry")
int BPF_PROG(rx_gro_receive, const struct sk_buff *skb)
{
	rx_start(skb);
	return 0;
}

/* The stack takes the packet (again, for a bridge's port and then the bridge:
 * the device stage is the first device's, the stack stage starts at the last). */
SEC("tp_btf/netif_receive_skb")
int BPF_PROG(rx_receive_skb, struct sk_buff *skb)
{
	__u64 key = (__u64)skb, now = bpf_ktime_get_ns();
	struct rx_entry *e = rx_take(key);
	struct pkt *p, fresh = {.ts = now, .point = POINT_STACK};

	if (e)
		observe(&e->p, DIR_RX, STAGE_DEVICE_TO_STACK, e->p.ts, now, NULL);
	locate(&fresh, skb->dev);
	if (!tcp_with_payload(skb) || !netns_allowed(fresh.netns))
		return 0;
	/* a bridge's port passed it up before: the stack stage starts again */
	p = bpf_map_lookup_elem(&netstack_rx, &key);
	if (p) {
		*p = fresh;
		return 0;
	}
	bpf_map_update_elem(&netstack_rx, &key, &fresh, BPF_ANY);
	return 0;
}

/* A TCP segment reaches its established socket (straight from the softirq,
 * or from the socket's backlog once its owner releases it). */
/* A TCP segment's sequence number and end (seq, end_seq: adjacent in the
 * control block, read at once); 0 if read. */
static __always_inline long seq_range(const struct tcp_skb_cb *cb, __u32 *range)
{
	return bpf_probe_read_kernel(range, 2 * sizeof(__u32),
				     (const void *)cb + bpf_core_field_offset(struct tcp_skb_cb, seq));
}

SEC("tp_btf/tcp_probe")
int BPF_PROG(rx_tcp_probe, struct sock *sk, const struct sk_buff *skb)
{
	__u64 key = (__u64)skb, now = bpf_ktime_get_ns(), oldest = ~0ULL;
	struct pkt *p = bpf_map_lookup_elem(&netstack_rx, &key);
	struct tcp_skb_cb *cb = (struct tcp_skb_cb *)&skb->cb[0];
	struct sk_rx *st;
	__u32 slot = 0;

	if (!p || p->point != POINT_STACK)
		return 0;
	observe(p, DIR_RX, STAGE_STACK_TO_SOCKET, p->ts, now, sk);
	/* from here on the socket's storage follows it: a free slot, else the
	 * oldest */
	st = bpf_sk_storage_get(&netstack_sk_rx, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (st) {
		for (__u32 i = 0; i < SK_RX_SLOTS; i++) {
			if (st->e[i].p.ts < oldest) {
				oldest = st->e[i].p.ts;
				slot = i;
			}
		}
		if (slot < SK_RX_SLOTS && !seq_range(cb, &st->e[slot].seq)) {
			st->e[slot].p = *p;
			st->e[slot].p.ts = now;
			st->e[slot].p.point = POINT_SOCKET;
		}
	}
	bpf_map_delete_elem(&netstack_rx, &key);
	return 0;
}

/* The first read of a segment waiting in its socket: the one that starts
 * at the skb's sequence number; the others the skb covers (merged into it)
 * are cleared, and so are any before it. */
static __always_inline void socket_read(struct sock *sk, const struct sk_buff *skb, __u64 now)
{
	struct tcp_skb_cb *cb = (struct tcp_skb_cb *)&skb->cb[0];
	struct sk_rx *st = bpf_sk_storage_get(&netstack_sk_rx, sk, 0, 0);
	__u32 range[2], seq, end_seq;

	if (!st || seq_range(cb, range))
		return;
	seq = range[0];
	end_seq = range[1];
	for (__u32 i = 0; i < SK_RX_SLOTS; i++) {
		struct rx_seg *e = &st->e[i];

		if (!e->p.ts || (__s32)(e->seq - end_seq) >= 0)
			continue;
		if (e->seq == seq)
			observe(&e->p, DIR_RX, STAGE_SOCKET_TO_READ, e->p.ts, now, sk);
		e->p.ts = 0;
	}
}

/* The application copies the packet's payload out (its first read of it). */
SEC("tp_btf/skb_copy_datagram_iovec")
int BPF_PROG(rx_read, const struct sk_buff *skb, int len)
{
	__u64 key = (__u64)skb, now;
	struct pkt *p = bpf_map_lookup_elem(&netstack_rx, &key);
	struct sock *sk = skb->sk;
	__u16 family = sk ? sk->__sk_common.skc_family : 0;

	/* only an inet packet came the receive path (a unix socket's skb
	 * may sit at the address of a packet that left no trace) */
	if (family != AF_INET && family != AF_INET6) {
		if (p)
			bpf_map_delete_elem(&netstack_rx, &key);
		return 0;
	}
	if (BPF_CORE_READ_BITFIELD(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	now = bpf_ktime_get_ns();
	note_process(sk);
	if (!p) {
		socket_read(sk, skb, now);
		return 0;
	}
	/* never at an established socket's point: the stack and the queue */
	observe(p, DIR_RX, STAGE_STACK_TO_READ, p->ts, now, sk);
	bpf_map_delete_elem(&netstack_rx, &key);
	return 0;
}

/* ---- transmit ----------------------------------------------------------- */

/* A TCP send call: the first one since the socket's last packet left. */
SEC("tp_btf/tcp_sendmsg_locked")
int BPF_PROG(tx_tcp_sendmsg, struct sock *sk)
{
	struct filter_config *cfg = filters();
	__u64 *sent;

	if (!netns_passes(cfg, sk->__sk_common.skc_net.net->ns.inum))
		return 0;
	if (cfg && cfg->pid)
		note_process(sk);
	sent = bpf_sk_storage_get(&netstack_sends, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (sent && !*sent)
		*sent = bpf_ktime_get_ns();
	return 0;
}

static __always_inline struct tx_slot *tx_slot(__u32 which)
{
	return bpf_map_lookup_elem(&netstack_tx_cpu, &which);
}

/* A packet enters the device layer (__dev_queue_xmit, before the qdisc). */
SEC("tp_btf/net_dev_queue")
int BPF_PROG(tx_dev_queue, struct sk_buff *skb)
{
	struct tx_slot *slot = tx_slot(TX_QUEUED);
	struct sock *sk = skb->sk;
	__u64 key = (__u64)skb, *sent;
	struct pkt p = {.sk = (__u64)sk, .point = POINT_QUEUED};

	locate(&p, skb->dev);
	if (!slot || !netns_allowed(p.netns))
		return 0;
	p.ts = bpf_ktime_get_ns();
	/* only a TCP socket has a send call to time (its protocol read as
	 * CO-RE has it: a bitfield before Linux 5.6) */
	if (sk && BPF_CORE_READ_BITFIELD(sk, sk_protocol) == IPPROTO_TCP) {
		sent = bpf_sk_storage_get(&netstack_sends, sk, 0, 0);
		if (sent && *sent) {
			observe(&p, DIR_TX, STAGE_SEND_TO_QDISC, *sent, p.ts, sk);
			*sent = 0;
		}
	}
	if (tx_always_hashed) {
		bpf_map_update_elem(&netstack_tx, &key, &p, BPF_ANY);
		return 0;
	}
	slot->skb = key;
	slot->p = p;
	return 0;
}

/* A qdisc keeps the packet for later: it may leave from another CPU. */
SEC("tp_btf/qdisc_enqueue")
int BPF_PROG(tx_qdisc_enqueue, struct Qdisc *qdisc, const struct netdev_queue *txq, struct sk_buff *skb)
{
	struct tx_slot *slot = tx_slot(TX_QUEUED);
	__u64 key = (__u64)skb;

	if (!slot || slot->skb != key)
		return 0;
	bpf_map_update_elem(&netstack_tx, &key, &slot->p, BPF_ANY);
	slot->skb = 0;
	return 0;
}

/* The driver is handed the packet (after the qdisc, if the device has one). */
SEC("tp_btf/net_dev_start_xmit")
int BPF_PROG(tx_start_xmit, const struct sk_buff *skb, const struct net_device *dev)
{
	struct tx_slot *queued = tx_slot(TX_QUEUED), *driver = tx_slot(TX_DRIVER);
	__u64 key = (__u64)skb, now = bpf_ktime_get_ns();
	struct pkt *p;

	if (!queued || !driver)
		return 0;
	if (queued->skb == key) {
		/* no qdisc kept it: sent in the call that queued it */
		observe(&queued->p, DIR_TX, STAGE_QDISC, queued->p.ts, now, (struct sock *)queued->p.sk);
		driver->p = queued->p;
		queued->skb = 0;
	} else if ((p = bpf_map_lookup_elem(&netstack_tx, &key))) {
		observe(p, DIR_TX, STAGE_QDISC, p->ts, now, (struct sock *)p->sk);
		driver->p = *p;
		bpf_map_delete_elem(&netstack_tx, &key);
	} else {
		/* not seen queued (a segment of a packet split after the
		 * qdisc): the driver stage is still there to time */
		locate(&driver->p, (struct net_device *)dev);
		if (!netns_allowed(driver->p.netns)) {
			driver->skb = 0;
			return 0;
		}
		driver->p.sk = (__u64)skb->sk;
	}
	driver->skb = key;
	driver->p.ts = now;
	driver->p.point = POINT_XMIT;
	return 0;
}

/* The driver is done with it (for a veth or loopback: handed to the peer). */
SEC("tp_btf/net_dev_xmit")
int BPF_PROG(tx_dev_xmit, struct sk_buff *skb)
{
	struct tx_slot *driver = tx_slot(TX_DRIVER);

	if (!driver || driver->skb != (__u64)skb)
		return 0;
	observe(&driver->p, DIR_TX, STAGE_DRIVER, driver->p.ts, bpf_ktime_get_ns(), (struct sock *)driver->p.sk);
	driver->skb = 0;
	return 0;
}

/* ---- drops -------------------------------------------------------------- */

SEC("tp_btf/kfree_skb")
int BPF_PROG(drop_kfree_skb, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	__u64 key = (__u64)skb;
	struct net_device *dev = skb_dev(skb);
	struct sock *sk = BPF_CORE_READ(skb, sk);
	struct drop_key dk = {.reason = reason};
	struct drop_stats *d;

	bpf_map_delete_elem(&netstack_rx, &key);
	bpf_map_delete_elem(&netstack_tx, &key);
	dk.netns = dev ? dev_netns(dev) : sk_netns(sk);
	if (!packet_allowed(sk, dk.netns))
		return 0;
	dk.ifindex = dev ? BPF_CORE_READ(dev, ifindex) : 0;
	d = bpf_map_lookup_elem(&netstack_drops, &dk);
	if (!d) {
		bpf_map_update_elem(&netstack_drops, &dk, &zero_drop, BPF_NOEXIST);
		d = bpf_map_lookup_elem(&netstack_drops, &dk);
		if (!d) {
			count_error(NS_ERR_NETSTACK_DROPS);
			return 0;
		}
		if (dev)
			bpf_core_read_str(d->ifname, sizeof(d->ifname), &dev->name);
	}
	counter_add(&d->packets, 1);
	d->last_ns = bpf_ktime_get_ns();
	return 0;
}

/* ---- TCP resets and retransmissions ------------------------------------- */

static __always_inline struct tcp_event_stats *tcp_stats(__u16 family)
{
	__u32 f = family == AF_INET6 ? FAMILY_IPV6 : FAMILY_IPV4;

	return bpf_map_lookup_elem(&netstack_tcp, &f);
}

/* A reset sent: in answer to a segment no socket takes (sk NULL), or by a
 * socket that aborts (skb NULL). */
SEC("tp_btf/tcp_send_reset")
int BPF_PROG(tcp_reset_sent, const struct sock *sk, const struct sk_buff *skb)
{
	struct tcp_event_stats *s;
	__u16 family;
	__u32 netns;

	if (sk) {
		family = BPF_CORE_READ(sk, __sk_common.skc_family);
		netns = sk_netns(sk);
	} else if (skb) {
		family = bpf_ntohs(BPF_CORE_READ(skb, protocol)) == ETH_P_IPV6 ? AF_INET6 : AF_INET;
		netns = dev_netns(skb_dev(skb));
	} else {
		return 0;
	}
	if (!packet_allowed(sk, netns))
		return 0;
	s = tcp_stats(family);
	if (s)
		counter_add(&s->resets_sent, 1);
	return 0;
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(tcp_reset_recv, struct sock *sk)
{
	struct tcp_event_stats *s;

	if (!packet_allowed(sk, sk_netns(sk)))
		return 0;
	s = tcp_stats(BPF_CORE_READ(sk, __sk_common.skc_family));
	if (s)
		counter_add(&s->resets_received, 1);
	return 0;
}

/* Segments retransmitted, as the kernel's RetransSegs counts them: a
 * retransmitted skb holds tcp_gso_segs of them. Newer kernels also trace
 * retransmissions that failed (err != 0), which RetransSegs leaves out. */
SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(tcp_retransmit, const struct sock *sk, const struct sk_buff *skb)
{
	struct tcp_event_stats *s;
	struct tcp_skb_cb *cb;
	__u16 segs;

	if (bpf_core_field_exists(struct trace_event_raw_tcp_retransmit_skb, err) && (int)ctx[2] != 0)
		return 0;
	if (!packet_allowed(sk, sk_netns(sk)))
		return 0;
	cb = (struct tcp_skb_cb *)&skb->cb[0];
	segs = BPF_CORE_READ(cb, tcp_gso_segs);
	s = tcp_stats(BPF_CORE_READ(sk, __sk_common.skc_family));
	if (s)
		counter_add(&s->retransmitted_segments, segs ? segs : 1);
	return 0;
}

BPFNET_EXPORT(enum family family; enum ns_direction direction; enum ns_stage stage; enum ns_error error;);

char LICENSE[] SEC("license") = "Dual BSD/GPL";
