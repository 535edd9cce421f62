/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Map keys and values of netstack.bpf.c that userspace reads. Userspace's
 * binding is generated from the object's BTF (scripts/gen-bindings.ts). */
#ifndef BPFNET_NETSTACK_H
#define BPFNET_NETSTACK_H

/* label values: userspace takes them from the object's BTF, named as the
 * values are without their common prefix (CONNECT_REFUSED: refused) */
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
/* netstack_errors[error]: samples not counted because the named map was full */
enum ns_error { NS_ERR_NETSTACK_LATENCY, NS_ERR_NETSTACK_DROPS, NS_ERR_COUNT };

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

#endif /* BPFNET_NETSTACK_H */
