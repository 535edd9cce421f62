/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Map keys and values of sock-redirect.bpf.c that userspace reads or writes.
 * Userspace's binding is generated from the object's BTF (scripts/gen-bindings.ts). */
#ifndef BPFNET_SOCK_REDIRECT_H
#define BPFNET_SOCK_REDIRECT_H

/* label values: userspace takes them from the object's BTF, named as the
 * values are without their common prefix (CONNECT_REFUSED: refused) */
enum fallback_reason {
	FALLBACK_PEER_MISSING,	  /* no paired socket to send to */
	FALLBACK_REDIRECT_FAILED, /* the kernel refused the redirect */
	FALLBACK_POLICY,	  /* redirect is paused (stopping, or switched off) */
	FALLBACK_STACK_USED,	  /* bytes this socket sent through the stack are
				   * not all read yet: redirecting could reorder */
	FALLBACK_RECEIVER_FULL,	  /* the peer has not read what was redirected to it:
				   * the stack's flow control holds the sender back */
	FALLBACK_MEMORY_PRESSURE, /* TCP memory (the host's, or the receiver's
				   * memory cgroup's) is under pressure */
	FALLBACK_REASON_COUNT,
};

/* A socket as its own end sees it. IPv4 addresses are stored IPv4-mapped
 * (::ffff:a.b.c.d) and family says IPv4 for them, so that an AF_INET socket
 * and the IPv4-mapped AF_INET6 socket at the other end give mirror keys. */
struct sock_key {
	__u32 local_ip[4];
	__u32 remote_ip[4];
	__u16 local_port;  /* host byte order */
	__u16 remote_port; /* host byte order */
	__u32 family;	   /* enum family */
};

/* redirect_stats[family] */
struct redirect_stats {
	__u64 connections; /* pairs found: both ends in the sockhash */
	__u64 messages;	   /* sendmsg() chunks redirected to the peer */
	__u64 bytes;
	__u64 fallbacks[FALLBACK_REASON_COUNT];
	__u64 map_full; /* sockets not inserted: the sockhash was full */
};

/* redirect_control[0]: pinned with the sockhash, so that a later instance
 * can pause the programs of one that died and take over. */
struct redirect_control {
	__u32 paused;	   /* 1: every message takes the normal stack */
	__u32 owner_pid;   /* the exporter that attached the programs */
	__u64 owner_start; /* its start time (/proc/PID/stat field 22) */
};

/* What redirect_queued_sum finds: bytes redirected to sockets of the
 * sockhash and not read by them yet */
struct redirect_queued {
	__u64 bytes[FAMILY_COUNT]; /* over all sockets */
	__u64 max[FAMILY_COUNT];   /* the most one socket holds */
};

#endif /* BPFNET_SOCK_REDIRECT_H */
