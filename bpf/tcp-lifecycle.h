/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Map values of tcp-lifecycle.bpf.c that userspace reads. Userspace's
 * binding is generated from the object's BTF (scripts/gen-bindings.ts). */
#ifndef BPFNET_TCP_LIFECYCLE_H
#define BPFNET_TCP_LIFECYCLE_H

/* label values: userspace takes them from the object's BTF, named as the
 * values are without their common prefix (CONNECT_REFUSED: refused) */
enum role { ROLE_CLIENT, ROLE_SERVER, ROLE_COUNT };
enum connect_result {
	CONNECT_ESTABLISHED,
	CONNECT_REFUSED,
	CONNECT_TIMEOUT,
	CONNECT_ABORTED,
	CONNECT_RESULT_COUNT,
};
/* ERR_LOST_*: events the ring buffer had no room for, by what they were;
 * ERR_*_FULL: events counted under a map's overflow entry (cgroup 0), the
 * map having no room for their key */
enum lifecycle_error {
	ERR_CONN_TABLE_FULL,
	ERR_LOST_CONNECT,
	ERR_LOST_CLOSE,
	ERR_CONNECTS_FULL,
	ERR_ACCEPTS_FULL,
	ERR_CLOSES_FULL,
	ERR_COUNT,
};
enum event_kind { EVENT_CONNECT_FAILED, EVENT_CLOSE };
enum fin_from { FIN_NONE, FIN_LOCAL, FIN_PEER };

/* The aggregation maps are hashes keyed by the connection's owner: the
 * cgroup v2 id of the process that created the socket (for accepted ones,
 * of the listener's), 0 for the overflow entries userspace creates at load,
 * which count what finds the map full. Userspace resolves the id to a pod,
 * container or cgroup path. */

/* tcp_connects[{cgroup, peer, peer_port, family}] */
struct connect_key {
	__u64 cgroup;
	__u32 peer;	 /* the peer's pod on this node (pod_addrs), 0: none */
	__u16 peer_port; /* the remote port connected to; 0 without that label */
	__u8 family;
	__u8 pad;
};

struct connect_stats {
	__u64 results[CONNECT_RESULT_COUNT];
	struct hist latency_ns; /* SYN sent to established */
};

/* tcp_accepts[{cgroup, port, family, comm}]: by listening port and the
 * command of the accepting process (empty if none accepted it before it
 * closed) */
struct accept_key {
	__u64 cgroup;
	__u16 port;
	__u8 family;
	__u8 pad[5];
	char comm[16];
};

struct accept_stats {
	__u64 accepted;
	struct hist handshake_ns; /* SYN-ACK sent to established */
	struct hist queue_ns;	  /* established to returned by accept() */
};

/* tcp_closes[{cgroup, family, role}] */
struct close_key {
	__u64 cgroup;
	__u8 family;
	__u8 role;
	__u8 pad[6];
};

struct close_stats {
	__u64 retransmits;
	struct hist lifetime_ns;    /* established to closed */
	struct hist sent_bytes;	    /* payload acknowledged by the peer */
	struct hist received_bytes; /* payload received in order */
	struct hist srtt_ns;	    /* smoothed RTT at close */
};

/* cgroup_names[cgroup id]: the names of a cgroup and its ancestors, taken
 * when it first keys an aggregation map, so that userspace can still tell
 * whose it was after it is gone (a container that ran for a moment) */
#define CGROUP_NAME_LEVELS 5
#define CGROUP_NAME_LEN	   96
struct cgroup_names {
	__u32 level; /* its depth: 1 for a child of the root */
	__u32 pad;
	char names[CGROUP_NAME_LEVELS][CGROUP_NAME_LEN]; /* [0]: its own */
};

/* pod_addrs[{family, addr}]: addresses of the pods on this node (their
 * network namespaces'), by a number userspace gives each pod */
struct pod_addr {
	__u8 family;
	__u8 pad[3];
	__u32 addr32[4]; /* network byte order; IPv4: the first word */
};

/* A connection's addresses and ports (IPv4: the first 4 bytes; an IPv4-mapped
 * peer counts as IPv4); ports in host byte order. */
struct tuple {
	__u8 laddr[16];
	__u8 raddr[16];
	__u16 lport;
	__u16 rport;
};

/* tcp_events (ring buffer), with enable_events: one per closed connection
 * (EVENT_CLOSE), and one per connect that failed (EVENT_CONNECT_FAILED).
 * Times are the kernel's monotonic clock (bpf_ktime_get_ns), in ns. */
struct conn_event {
	__u64 start_ns;	      /* client: SYN sent; server: SYN-ACK sent */
	__u64 established_ns; /* 0: never established */
	__u64 fin_ns;	      /* the first FIN, either way; 0: none */
	__u64 end_ns;	      /* closed, or the connect failed */
	__u64 id;	      /* the connection's: unique while the object is loaded */
	__u64 parent_id;      /* sidecar: the inbound connection this one serves */
	__u64 root_id;	      /* the first connection of the chain (0: this one) */
	__u64 sent_bytes;     /* payload acknowledged by the peer */
	__u64 received_bytes; /* payload received in order */
	__u64 cgroup;	      /* the socket owner's cgroup v2 id */
	__u32 retransmits;
	__u32 srtt_us;
	__u32 tgid; /* connecting or accepting process */
	__u32 peer; /* the peer's pod on this node (pod_addrs), 0: none */
	struct tuple ends;
	__u8 kind;   /* enum event_kind */
	__u8 family; /* enum family */
	__u8 role;
	__u8 result;   /* enum connect_result */
	__u8 fin_from; /* enum fin_from */
	__u8 pad[3];
	char comm[16]; /* of tgid, when it connected or accepted */
};

/* sidecar_stats[sidecar]: --sidecar-comm / --sidecar-pid, in order */
#define MAX_SIDECARS 16
struct sidecar_stats {
	struct hist forward_ns;	 /* the proxy's accept to its connect upstream */
	struct hist upstream_ns; /* the proxy's connect to the application's accept */
	__u64 reused;		 /* inbound connections sent over an older upstream one */
	__u64 unpaired;		 /* inbound connections closed with neither */
};

#endif /* BPFNET_TCP_LIFECYCLE_H */
