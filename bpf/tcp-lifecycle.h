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
/* ERR_LOST_*: events the ring buffer had no room for, by what they were */
enum lifecycle_error { ERR_CONN_TABLE_FULL, ERR_LOST_CONNECT, ERR_LOST_CLOSE, ERR_COUNT };
enum event_kind { EVENT_CONNECT_FAILED, EVENT_CLOSE };
enum fin_from { FIN_NONE, FIN_LOCAL, FIN_PEER };

/* tcp_connect_stats[family] */
struct connect_stats {
	__u64 results[CONNECT_RESULT_COUNT];
	struct hist latency_ns; /* SYN sent to established */
};

/* tcp_accept_stats[family] */
struct accept_stats {
	struct hist handshake_ns; /* SYN-ACK sent to established */
	struct hist queue_ns;	  /* established to returned by accept() */
};

/* tcp_accepts[{port, family, comm}]: by listening port and the command of
 * the accepting process (empty if none accepted it before it closed); port 0
 * holds what does not fit in the map */
struct accept_key {
	__u16 port;
	__u8 family;
	__u8 pad;
	char comm[16];
};

/* tcp_close_stats[family * ROLE_COUNT + role] */
struct close_stats {
	__u64 retransmits;
	struct hist lifetime_ns;    /* established to closed */
	struct hist sent_bytes;	    /* payload acknowledged by the peer */
	struct hist received_bytes; /* payload received in order */
	struct hist srtt_ns;	    /* smoothed RTT at close */
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
	__u32 retransmits;
	__u32 srtt_us;
	__u32 tgid; /* connecting or accepting process */
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
};

#endif /* BPFNET_TCP_LIFECYCLE_H */
