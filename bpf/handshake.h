/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The retransmits of a handshake, which the packet hooks see and the
 * transitions out of syn-sent and syn-recv give to the socket: SYNs from
 * the socket's own count, SYN-ACKs from a table kept by 4-tuple (the
 * socket does not exist yet when its listener retransmits them).
 */
#ifndef SOCKTRACE_HANDSHAKE_H
#define SOCKTRACE_HANDSHAKE_H

#include "common.h"

/* SYN-ACKs retransmitted for a connection in its handshake, by its
 * 4-tuple on the listener's side: given to the accepted socket when it
 * leaves syn-recv. */
struct tuple {
	__u8 laddr[16];
	__u8 raddr[16];
	__u32 netns;
	__u16 lport;
	__u16 rport;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct tuple);
	__type(value, __u16);
} synacks SEC(".maps");

/* The 4-tuple of a socket or request socket (both begin with their
 * sock_common). */
static __always_inline void fill_tuple(struct tuple *t, const struct sock_common *c, __u32 netns, __u16 family)
{
	__builtin_memset(t, 0, sizeof(*t));
	t->netns = netns;
	t->lport = BPF_CORE_READ(c, skc_num);
	t->rport = bpf_ntohs(BPF_CORE_READ(c, skc_dport));
	if (family == AF_INET) {
		BPF_CORE_READ_INTO((__be32 *)t->laddr, c, skc_rcv_saddr);
		BPF_CORE_READ_INTO((__be32 *)t->raddr, c, skc_daddr);
	} else {
		BPF_CORE_READ_INTO(&t->laddr, c, skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&t->raddr, c, skc_v6_daddr.in6_u.u6_addr8);
	}
}

/* An accepted socket leaving syn-recv takes the SYN-ACK retransmits of
 * its handshake. */
static __always_inline void take_synacks(struct sock *sk, struct sock_info *next, __u32 netns, __u16 family,
					 __u16 sport, __u16 dport)
{
	struct tuple t;
	__u16 *n;

	fill_tuple(&t, (const struct sock_common *)sk, netns, family);
	n = bpf_map_lookup_elem(&synacks, &t);
	if (n) {
		next->syn_retrans += *n;
		bpf_map_delete_elem(&synacks, &t);
	}
}

/*
 * SYN retransmissions the hook did not see. The kernel counts every
 * retransmission attempt in total_retrans (which, in syn-sent, counts
 * nothing but SYNs), also one that failed: a SYN that a firewall dropped
 * on the way out (nftables' output hook) fails in the sending, and the
 * kernel counts it as TcpExtTCPRetransFail. The tcp_retransmit_skb
 * tracepoint fires only for those that went out (before 6.17; since, the
 * hook counts only those). So the socket's count is the larger of the
 * two: this brings info's up to the kernel's and returns how many it
 * added.
 */
static __always_inline __u16 sync_syn_retrans(struct sock *sk, struct sock_info *info)
{
	__u32 n = BPF_CORE_READ((struct tcp_sock *)sk, total_retrans);

	if (n > 0xffff)
		n = 0xffff;
	if (n <= info->syn_retrans)
		return 0;
	__u16 added = n - info->syn_retrans;
	info->syn_retrans = n;
	return added;
}

#endif /* SOCKTRACE_HANDSHAKE_H */
