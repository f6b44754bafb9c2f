/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Retransmits, resets, errors and SYN-ACK retransmits: counted on the
 * socket (and its destination, for a connect), and sent as records of
 * their own kind when user space asks for them (cfg.kinds).
 */
#ifndef SOCKTRACE_PACKETS_H
#define SOCKTRACE_PACKETS_H

#include "common.h"
#include "dests.h"
#include "handshake.h"
#include "record.h"

/* The socket's netns and family, if it is a full TCP socket and passes
 * those filters. */
static __always_inline int tcp_sock_wanted(struct sock *sk, __u32 *netns, __u16 *family)
{
	if (!sk)
		return 0;
	/* A reset may be sent for a time-wait or request socket: those end
	 * with their sock_common, so nothing past it may be read. */
	int state = BPF_CORE_READ(sk, __sk_common.skc_state);
	if (state == TCP_TIME_WAIT || state == TCP_NEW_SYN_RECV)
		return 0;
	return sock_wanted(sk, netns, family);
}

/* The socket's entry, made for an older socket first seen by a packet
 * hook (ts_ns 0: no transition seen). */
static __always_inline struct sock_info *sock_entry(__u64 skaddr, __u16 sport)
{
	struct sock_info *info = bpf_map_lookup_elem(&socks, &skaddr);

	if (!info) {
		struct sock_info n = { .sport = sport };

		bpf_map_update_elem(&socks, &skaddr, &n, BPF_NOEXIST);
		info = bpf_map_lookup_elem(&socks, &skaddr);
	}
	return info;
}

/* Counts a packet event of kind on the socket's entry; returns the
 * destination counter it adds *n to (NR_DEST_COUNTERS: none). */
static __always_inline __u32 count_on_socket(struct sock *sk, struct sock_info *info, __u8 kind, int state,
					     __u64 *n)
{
	__u32 idx = NR_DEST_COUNTERS;

	switch (kind) {
	case KIND_RETRANSMIT:
		if (state == TCP_SYN_SENT) {
			info->syn_retrans++; /* the socket's lock is held: one writer */
			*n += sync_syn_retrans(sk, info);
			idx = C_SYN_RETRANS;
		} else {
			info->retrans++;
			idx = C_RETRANS;
		}
		break;
	case KIND_RESET_SENT:
		info->rst |= RST_SENT;
		idx = C_RST_SENT;
		break;
	case KIND_RESET_RECEIVED:
		info->rst |= RST_RECEIVED;
		idx = C_RST_RECEIVED;
		break;
	}
	return idx;
}

/* A retransmit, reset or error of a socket: counted on the socket (and
 * its destination, for a connect), and sent as a record if asked for. */
static __always_inline int on_packet(struct sock *sk, __u8 kind)
{
	__u32 netns;
	__u16 family;

	if (!tcp_sock_wanted(sk, &netns, &family))
		return 0;
	__u64 skaddr = (__u64)sk;
	__u16 sport = local_port(sk);
	__u16 dport = remote_port(sk);
	int state = BPF_CORE_READ(sk, __sk_common.skc_state);
	struct sock_info *info = sock_entry(skaddr, sport);

	if (!info)
		return 0;
	if (!sport)
		sport = info->sport;
	__u64 n = 1;
	__u32 idx = count_on_socket(sk, info, kind, state, &n);
	if (info->active && idx < NR_DEST_COUNTERS && ports_match(sport, dport))
		count_dest(sk, info, netns, family, dport, idx, n);
	if (cfg.kinds & (1U << (kind & 7))) {
		struct owner cur;
		struct sock_info copy = *info;

		current_owner(&cur);
		struct meta m = {
			.ts_ns = bpf_ktime_get_ns(),
			.task = &cur,
			.oldstate = state,
			.newstate = state,
		};
		emit(sk, &m, &copy, netns, family, sport, dport, 0, kind);
	}
	return 0;
}

/* A SYN-ACK retransmitted by listener sk for request req. */
static __always_inline int on_synack(struct sock *sk, struct request_sock *req)
{
	__u32 netns;
	__u16 family;
	struct tuple t;
	__u16 one = 1, *n;

	if (!req || !tcp_sock_wanted(sk, &netns, &family))
		return 0;
	fill_tuple(&t, (const struct sock_common *)req, netns, family);
	n = bpf_map_lookup_elem(&synacks, &t);
	if (n)
		*n += 1; /* the request's timer: one writer */
	else
		bpf_map_update_elem(&synacks, &t, &one, BPF_NOEXIST);
	return 0;
}

#endif /* SOCKTRACE_PACKETS_H */
