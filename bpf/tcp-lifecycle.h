/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Map values of tcp-lifecycle.bpf.c that userspace reads. Their layout is
 * taken from the object's BTF at load time (src/libbpf/btf.ts), never copied. */
#ifndef BPFNET_TCP_LIFECYCLE_H
#define BPFNET_TCP_LIFECYCLE_H

/* label values, in the order userspace names them */
enum family { FAMILY_IPV4, FAMILY_IPV6, FAMILY_COUNT };
enum role { ROLE_CLIENT, ROLE_SERVER, ROLE_COUNT };
enum connect_result {
	CONNECT_ESTABLISHED,
	CONNECT_REFUSED,
	CONNECT_TIMEOUT,
	CONNECT_ABORTED,
	CONNECT_RESULT_COUNT,
};
enum lifecycle_error { ERR_CONN_TABLE_FULL, ERR_COUNT };

/* tcp_connect_stats[family] */
struct connect_stats {
	__u64 results[CONNECT_RESULT_COUNT];
	struct hist latency_ns;		/* SYN sent to established */
};

/* tcp_accept_stats[family] */
struct accept_stats {
	struct hist handshake_ns;	/* SYN-ACK sent to established */
	struct hist queue_ns;		/* established to returned by accept() */
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
	struct hist lifetime_ns;	/* established to closed */
	struct hist sent_bytes;		/* payload acknowledged by the peer */
	struct hist received_bytes;	/* payload received in order */
	struct hist srtt_ns;		/* smoothed RTT at close */
};

#endif /* BPFNET_TCP_LIFECYCLE_H */
