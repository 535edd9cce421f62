// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* The floor under the network stack probe's cost (bench/netstack.sh
 * --configs floor): an empty program on each tracepoint the probe uses, so
 * that what a packet pays just for the programs being there is measured on
 * its own. */
#include "bpfnet.h"

#define EMPTY(tp)                                                                                                      \
	SEC("tp_btf/" #tp)                                                                                             \
	int floor_##tp(void *ctx)                                                                                      \
	{                                                                                                              \
		return 0;                                                                                              \
	}

EMPTY(netif_rx)
EMPTY(napi_gro_receive_entry)
EMPTY(netif_receive_skb)
EMPTY(tcp_probe)
EMPTY(skb_copy_datagram_iovec)
EMPTY(tcp_sendmsg_locked)
EMPTY(net_dev_queue)
EMPTY(qdisc_enqueue)
EMPTY(net_dev_start_xmit)
EMPTY(net_dev_xmit)
EMPTY(kfree_skb)
EMPTY(tcp_send_reset)
EMPTY(tcp_receive_reset)
EMPTY(tcp_retransmit_skb)

char LICENSE[] SEC("license") = "Dual BSD/GPL";
