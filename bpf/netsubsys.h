/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Map keys and values of netsubsys.bpf.c that userspace reads. Their layout
 * is taken from the object's BTF at load time (src/libbpf/btf.ts). */
#ifndef BPFNET_NETSUBSYS_H
#define BPFNET_NETSUBSYS_H

/* label values, in the order userspace names them */
enum ns_direction { DIR_RX, DIR_TX, DIR_COUNT };
enum ns_stage {
	STAGE_DEVICE_TO_STACK, /* rx: netif_rx | napi_gro_receive_entry -> netif_receive_skb */
	STAGE_STACK_TO_SOCKET, /* rx: netif_receive_skb -> tcp_probe (its TCP socket) */
	STAGE_SOCKET_TO_READ,  /* rx: tcp_probe -> skb_copy_datagram_iovec (first read) */
	STAGE_STACK_TO_READ,   /* rx, TCP without tcp_probe (past its FIN): netif_receive_skb -> first read */
	STAGE_SEND_TO_QDISC,   /* tx: tcp_sendmsg_locked -> net_dev_queue (first packet) */
	STAGE_QDISC,	       /* tx: net_dev_queue -> net_dev_start_xmit */
	STAGE_DRIVER,	       /* tx: net_dev_start_xmit -> net_dev_xmit */
	STAGE_COUNT,
};
enum ns_family { NS_IPV4, NS_IPV6, NS_FAMILY_COUNT };
enum ns_error { NS_ERR_LATENCY_FULL, NS_ERR_DROPS_FULL, NS_ERR_COUNT };

#define IFNAMSIZ 16

/* netstack_latency[{netns, ifindex, direction, stage}] (per CPU) */
struct stage_key {
	__u32 netns; /* inode number of the device's network namespace */
	__u32 ifindex;
	__u8 direction;
	__u8 stage;
	__u16 pad;
};

struct stage_stats {
	struct hist ns;
	__u64 last_ns;	       /* when this CPU last added a sample */
	char ifname[IFNAMSIZ]; /* on the CPU that created the entry */
};

/* netstack_drops[{netns, ifindex, reason}] (per CPU); ifindex 0: no device */
struct drop_key {
	__u32 netns;
	__u32 ifindex;
	__u32 reason; /* enum skb_drop_reason */
};

struct drop_stats {
	__u64 packets;
	__u64 last_ns;
	char ifname[IFNAMSIZ];
};

/* netstack_tcp[family] (per CPU) */
struct tcp_event_stats {
	__u64 resets_sent;
	__u64 resets_received;
	__u64 retransmitted_segments;
};

#endif /* BPFNET_NETSUBSYS_H */
