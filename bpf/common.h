/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What every program of socktrace.bpf.c shares: the kernel's constants,
 * the filter user space sets before load, the owner of a socket and the
 * table of live sockets.
 */
#ifndef SOCKTRACE_COMMON_H
#define SOCKTRACE_COMMON_H

#include "socktrace.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

enum {
	TCP_ESTABLISHED = 1,
	TCP_SYN_SENT,
	TCP_SYN_RECV,
	TCP_FIN_WAIT1,
	TCP_FIN_WAIT2,
	TCP_TIME_WAIT,
	TCP_CLOSE,
	TCP_CLOSE_WAIT,
	TCP_LAST_ACK,
	TCP_LISTEN,
	TCP_CLOSING,
	TCP_NEW_SYN_RECV,
};

const volatile struct config cfg = {
	.state_mask = 0xffffffff,
	.want_inet = 1,
	.want_inet6 = 1,
	.drop_consumed = ~0U,
	.drop_no_socket = ~0U,
	.drop_purge = ~0U,
};

struct owner {
	__u64 cgroup; /* cgroup v2 id (the cgroup directory's inode) */
	__u32 pid;
	__u32 tid;
	char comm[TASK_COMM_LEN];
};

/* What socktrace remembers about a live socket, keyed by its address. */
struct sock_info {
	__u64 ts_ns; /* time of its last transition; 0: none seen (an entry
		      * a retransmit or reset of an older socket made) */
	struct owner owner;
	__u32 retrans;     /* data segments retransmitted */
	__u16 syn_retrans; /* SYN retransmissions tried (SYN-ACKs for an accepted socket) */
	__u16 sport;       /* the local port, last known */
	__u8 owner_known;
	__u8 rst;    /* RST_SENT, RST_RECEIVED */
	__u8 active; /* an active open (connect): counted by destination */
	__u8 opener; /* OPENER_*: how the socket was opened, if seen */
	__u8 drop_dir; /* DROP_SENT, DROP_RECEIVED: the last drop's */
	__u32 drops;   /* packets dropped on this host (drops.h) */
	__u64 drop_reason;
};

/* sock_info.opener: the socket was seen in syn-sent (a connect) or in
 * syn-recv (accepted from a listener); 0: neither (open before the trace,
 * or forgotten). */
#define OPENER_CONNECT 1
#define OPENER_ACCEPT 2

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 131072);
	__type(key, __u64);
	__type(value, struct sock_info);
} socks SEC(".maps");

static __always_inline void current_owner(struct owner *o)
{
	__u64 id = bpf_get_current_pid_tgid();

	o->pid = id >> 32;
	o->tid = (__u32)id;
	o->cgroup = bpf_get_current_cgroup_id();
	/* The helper stops at the name's end without padding on some
	 * kernels (6.1's strscpy): zero it first, so that the bytes after
	 * the name are the same for every socket of one process (the name
	 * is part of the connect counters' key). */
	__builtin_memset(o->comm, 0, sizeof(o->comm));
	bpf_get_current_comm(o->comm, sizeof(o->comm));
}

static __always_inline int port_match(__u16 port, const volatile struct port_range *r, __u8 n)
{
	if (n == 0)
		return 1;
#pragma unroll
	for (int i = 0; i < MAX_PORT_RANGES; i++) {
		if (i < n && port >= r[i].lo && port <= r[i].hi)
			return 1;
	}
	return 0;
}

/* Whether both ports pass the filter. */
static __always_inline int ports_match(__u16 sport, __u16 dport)
{
	return port_match(sport, cfg.sport, cfg.nr_sport) && port_match(dport, cfg.dport, cfg.nr_dport);
}

/* The socket's netns and family, if it is TCP and passes those filters. */
static __always_inline int sock_wanted(struct sock *sk, __u32 *netns, __u16 *family)
{
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	*family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (*family == AF_INET) {
		if (!cfg.want_inet)
			return 0;
	} else if (*family == AF_INET6) {
		if (!cfg.want_inet6)
			return 0;
	} else {
		return 0;
	}
	*netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	return !cfg.netns || *netns == cfg.netns;
}

/* The socket's local port, host order; 0 while it has none (at
 * close -> syn-sent, the port is picked later in connect). skc_num is the
 * port the socket holds: the kernel clears it when the socket lets go of
 * the port (inet_put_port, as it enters close, before the transition is
 * announced). inet_sport keeps it: the kernel's own tracepoint reports
 * that one. */
static __always_inline __u16 local_port(struct sock *sk)
{
	__u16 port = BPF_CORE_READ(sk, __sk_common.skc_num);

	if (!port)
		port = bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
	return port;
}

static __always_inline __u16 remote_port(struct sock *sk)
{
	return bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
}

#endif /* SOCKTRACE_COMMON_H */
