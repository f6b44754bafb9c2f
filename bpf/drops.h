/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Packets dropped on this host (skb:kfree_skb), attributed to the TCP
 * socket they were sent by or meant for: counted on the socket (its
 * records carry the count, the last reason and direction), on the
 * destination of a connect (drop_dests: exact when the ring buffer is
 * full), and sent as a KIND_DROP record when user space asks for it.
 *
 * The tracepoint is (skb, location) before 5.17, gains the reason in 5.17
 * and the receiving socket (rx_sk, may be NULL) in 6.11; user space
 * attaches the program for the kernel's argument count. Where the kernel
 * gives no reason, the reason is the location (the address of the
 * function that freed the packet), which user space names through
 * /proc/kallsyms.
 *
 * A drop that is not of a TCP packet costs a few reads and one per-CPU
 * add; one of no socket socktrace follows is counted by reason and
 * namespace, and sent (KIND_DROP, no socket: the packet's addresses and
 * ports) only when it is a SYN or SYN-ACK not dropped for want of a
 * socket (NO_SOCKET): user space gives it to the connect attempt of
 * that 4-tuple (a SYN dropped on the input hook of a namespace on this
 * host, which the kernel frees without a socket).
 */
#ifndef SOCKTRACE_DROPS_H
#define SOCKTRACE_DROPS_H

#include "common.h"
#include "dests.h"
#include "record.h"
#include "packets.h"

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_ACK 0x10

/* Drops of packets that are not TCP over IPv4 or IPv6: [0], per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} drops_other SEC(".maps");

/* Drops of TCP packets of no socket socktrace follows, by reason and
 * namespace (struct drop_other_key); when the map is full, a new key is
 * not counted. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct drop_other_key);
	__type(value, __u64);
} drops_nosock SEC(".maps");

/* Drops by destination of active opens, reason and direction. Not
 * preallocated, as dests. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct drop_dest_key);
	__type(value, __u64);
} drop_dests SEC(".maps");

/* Drops of connects counted without a destination: drop_dests was full. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} drop_dests_overflow SEC(".maps");

/* Counts a drop of no followed socket, in the namespace of the device the
 * packet came in on (or went out of), if it passes the namespace filter. */
static __always_inline void count_nosock(struct sk_buff *skb, __u64 reason)
{
	struct drop_other_key k = { .reason = reason };
	__u64 one = 1, *n;

	k.netns = BPF_CORE_READ(skb, dev, nd_net.net, ns.inum);
	if (cfg.netns && k.netns != cfg.netns)
		return;
	n = bpf_map_lookup_elem(&drops_nosock, &k);
	if (n)
		*n += 1; /* per-CPU */
	else
		bpf_map_update_elem(&drops_nosock, &k, &one, BPF_NOEXIST);
}

static __always_inline void count_other(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&drops_other, &zero);

	if (n)
		__sync_fetch_and_add(n, 1); /* a nested run may come between */
}

/* Whether a drop of no socket is worth telling user space about: a
 * handshake packet (SYN or SYN-ACK) of the ports the filter wants, not
 * dropped because no socket wanted it (NO_SOCKET: a closed port, where
 * storms come from). */
static __always_inline int tuple_wanted(__u64 reason, __u8 tcpflags, __u16 psport, __u16 pdport)
{
	if (!cfg.drop_tuples || !(tcpflags & TCP_FLAG_SYN))
		return 0;
	if (reason == cfg.drop_no_socket)
		return 0;
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (reason >= cfg.drop_quiet_lo[i] && reason < cfg.drop_quiet_hi[i])
			return 0;
	}
	/* The connecting socket sent a SYN, and is sent a SYN-ACK. */
	if (tcpflags & TCP_FLAG_ACK)
		return ports_match(pdport, psport);
	return ports_match(psport, pdport);
}

/* Sends a drop of no socket with the packet's addresses and ports, for
 * user space to give to the connect attempt they belong to: a SYN
 * (drop_dir sent: the connecting socket's) or a SYN-ACK (received). */
static __always_inline void send_tuple(struct sk_buff *skb, __u64 reason, const unsigned char *iph, int v6,
				       __u16 psport, __u16 pdport, __u8 tcpflags)
{
	struct event *e = reserve_record(KIND_DROP);

	if (!e)
		return;
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_ns();
	e->netns = BPF_CORE_READ(skb, dev, nd_net.net, ns.inum);
	if (v6) {
		e->family = AF_INET6;
		bpf_probe_read_kernel(e->saddr, 16, iph + 8);
		bpf_probe_read_kernel(e->daddr, 16, iph + 24);
	} else {
		e->family = AF_INET;
		bpf_probe_read_kernel(e->saddr, 4, iph + 12);
		bpf_probe_read_kernel(e->daddr, 4, iph + 16);
	}
	__u64 id = bpf_get_current_pid_tgid();
	e->pid = id >> 32;
	e->tid = (__u32)id;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->sport = psport;
	e->dport = pdport;
	e->kind = KIND_DROP;
	e->drops = 1;
	e->drop_reason = reason;
	e->drop_dir = (tcpflags & TCP_FLAG_ACK) ? DROP_RECEIVED : DROP_SENT;
	bpf_ringbuf_submit(e, 0);
}

/* Adds one drop to the destination of an active open. */
static __always_inline void count_drop_dest(struct sock *sk, const struct sock_info *info, __u32 netns,
					    __u16 family, __u16 dport, __u64 reason, __u8 dir)
{
	struct drop_dest_key k = {};
	__u64 one = 1, *n;

	k.dest.netns = netns;
	k.dest.family = family;
	k.dest.dport = dport;
	if (info->owner_known) {
		k.dest.owner_known = 1;
		k.dest.cgroup = info->owner.cgroup;
		__builtin_memcpy(k.dest.comm, info->owner.comm, sizeof(k.dest.comm));
	}
	if (family == AF_INET)
		BPF_CORE_READ_INTO((__be32 *)k.dest.daddr, sk, __sk_common.skc_daddr);
	else
		BPF_CORE_READ_INTO(&k.dest.daddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	k.reason = reason;
	k.dir = dir;
	n = bpf_map_lookup_elem(&drop_dests, &k);
	if (n) {
		__sync_fetch_and_add(n, 1);
		return;
	}
	/* Fails when another CPU made it meanwhile (then add to that), or
	 * when the map is full (then count it without a destination). */
	if (bpf_map_update_elem(&drop_dests, &k, &one, BPF_NOEXIST) == 0)
		return;
	n = bpf_map_lookup_elem(&drop_dests, &k);
	if (n) {
		__sync_fetch_and_add(n, 1);
		return;
	}
	__u32 zero = 0;
	n = bpf_map_lookup_elem(&drop_dests_overflow, &zero);
	if (n)
		__sync_fetch_and_add(n, 1);
}

/* One packet freed as dropped: reason is the kernel's enum skb_drop_reason
 * (or the freeing function's address), rx_sk the receiving socket the
 * kernel names (6.11+), else NULL. */
static __always_inline int on_drop(struct sk_buff *skb, __u64 reason, struct sock *rx_sk)
{
	/* Not drops on the way: a packet consumed, or one a socket had
	 * received (and acknowledged) freed with its queue as it is
	 * destroyed (a FIN nobody read: one a connection). */
	if (reason == cfg.drop_consumed || reason == cfg.drop_purge)
		return 0;
	/* Read directly (tp_btf gives a BTF-typed skb): no helper call
	 * before the packet is known to be TCP. */
	__be16 proto = skb->protocol;
	unsigned char *head = skb->head;
	__u16 nh = skb->network_header;
	__u8 ip[10];
	__u32 th;

	if (proto == bpf_htons(ETH_P_IP)) {
		if (bpf_probe_read_kernel(ip, sizeof(ip), head + nh) || (ip[0] >> 4) != 4 || ip[9] != IPPROTO_TCP)
			goto other;
		th = nh + (ip[0] & 0xf) * 4;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		/* Only TCP right after the fixed header: no extension headers. */
		if (bpf_probe_read_kernel(ip, 7, head + nh) || (ip[0] >> 4) != 6 || ip[6] != IPPROTO_TCP)
			goto other;
		th = nh + 40;
	} else {
		goto other;
	}

	__u8 tcph[14]; /* ports, sequence numbers, offset, flags */
	if (bpf_probe_read_kernel(tcph, sizeof(tcph), head + th))
		goto other;
	__u16 psport = ((__u16)tcph[0] << 8) | tcph[1], pdport = ((__u16)tcph[2] << 8) | tcph[3];

	struct sock *sk = rx_sk ? rx_sk : BPF_CORE_READ(skb, sk);
	__u32 netns;
	__u16 family;
	if (!tcp_sock_wanted(sk, &netns, &family)) {
		count_nosock(skb, reason);
		if (tuple_wanted(reason, tcph[13], psport, pdport))
			send_tuple(skb, reason, head + nh, proto == bpf_htons(ETH_P_IPV6), psport, pdport, tcph[13]);
		return 0;
	}
	/* Which way the packet went, from its ports: a socket the kernel
	 * names for a packet of another connection (a listener's reply
	 * socket) is not its socket. */
	__u16 sport = local_port(sk);
	__u16 dport = remote_port(sk);
	__u8 dir;
	if (psport == sport && pdport == dport)
		dir = DROP_SENT;
	else if (pdport == sport && (psport == dport || dport == 0))
		dir = DROP_RECEIVED;
	else {
		count_nosock(skb, reason);
		return 0;
	}
	/* A packet the socket had received, freed once it is closed: its
	 * queue purged as it is destroyed (a FIN nobody read, one a
	 * connection closed by the server first), not a drop on the way.
	 * QUEUE_PURGE says so from 6.x; older kernels give no reason. */
	if (dir == DROP_RECEIVED && BPF_CORE_READ(sk, __sk_common.skc_state) == TCP_CLOSE)
		return 0;

	struct sock_info *info = sock_entry((__u64)sk, sport);
	if (!info)
		return 0;
	__sync_fetch_and_add(&info->drops, 1);
	info->drop_reason = reason;
	info->drop_dir = dir;
	if (info->active && ports_match(sport, dport))
		count_drop_dest(sk, info, netns, family, dport, reason, dir);
	if (cfg.kinds & (1U << KIND_DROP)) {
		struct owner cur;
		struct sock_info copy = *info;
		int state = BPF_CORE_READ(sk, __sk_common.skc_state);

		current_owner(&cur);
		struct meta m = {
			.ts_ns = bpf_ktime_get_ns(),
			.task = &cur,
			.oldstate = state,
			.newstate = state,
		};
		emit(sk, &m, &copy, netns, family, sport, dport, 0, KIND_DROP);
	}
	return 0;
other:
	count_other();
	return 0;
}

#endif /* SOCKTRACE_DROPS_H */
