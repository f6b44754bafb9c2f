// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * socktrace: every TCP state transition, from the inet_sock_set_state
 * tracepoint to user space through a ring buffer.
 *
 * Four programs hold the same logic and differ only in how they attach and
 * how they get the socket cookie; user space loads the first that the kernel
 * accepts:
 *   tp_btf with bpf_get_socket_cookie()  (5.12+)
 *   tp_btf reading sk->skc_cookie         (5.5+)
 *   raw_tracepoint                        (4.17+, no BTF-typed arguments)
 *   classic tracepoint                    (needs tracefs)
 * Everything else about the socket is read with CO-RE.
 */
#include <linux/bpf.h>
#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_tracing.h>

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

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile struct config cfg = {
	.state_mask = 0xffffffff,
	.want_inet = 1,
	.want_inet6 = 1,
};

/* Keep the shared types in BTF so bpf2go emits Go declarations for them. */
const struct event *unused_event __attribute__((unused));
const struct dest_key *unused_dest_key __attribute__((unused));
const struct dest_counters *unused_dest_counters __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20); /* user space may resize before load */
} events SEC(".maps");

/* Records that matched the filter but found the ring buffer full: [0]
 * transitions, [1] retransmit, reset and error records. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

/* Counters by destination and owner of active opens (struct dest_key,
 * struct dest_counters); user space reads them, and deletes those of a
 * destination quiet for long. Not preallocated: an entry user space
 * deletes is freed only after the programs using it are done, so an
 * increment can never land on a reused entry of another key. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct dest_key);
	__type(value, struct dest_counters);
} dests SEC(".maps");

/* What found the dests map full, by counter. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NR_DEST_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} dests_overflow SEC(".maps");

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

struct listener_key {
	__u32 netns;
	__u16 port;
	__u16 pad;
};

/* Who listens on a port, so accepted sockets (born in softirq) get an owner. */
struct listener {
	struct owner owner;
	__u32 count;     /* listening sockets on this port */
	__u8 ambiguous;  /* they belong to different processes */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct listener_key);
	__type(value, struct listener);
} listeners SEC(".maps");

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

/*
 * Linux announces a new child socket (listening -> syn-recv) from
 * inet_csk_clone_lock() before it has copied the peer's address and port,
 * and the request's cookie, into the clone: on the kernels Debian 11, 12
 * and 13 ship (5.10, 6.1, 6.12) the transition shows the listener's
 * wildcard peer, and a cookie that is replaced right after. Such a
 * transition is held here until the socket's next one (out of syn-recv,
 * normally in the same softirq), and sent just before it, with the
 * socket's final addresses and cookie. Kernels that fill the clone in
 * first are recognised by its peer port and send it at once.
 */
struct held {
	__u64 ts_ns;
	struct owner task; /* on the CPU at the transition */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct held);
} held SEC(".maps");

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

/* Transitions that always run in the process that owns the socket. */
static __always_inline int in_owner_context(int oldstate, int newstate)
{
	return (oldstate == TCP_CLOSE && (newstate == TCP_SYN_SENT || newstate == TCP_LISTEN)) ||
	       (oldstate == TCP_ESTABLISHED && newstate == TCP_FIN_WAIT1) ||
	       (oldstate == TCP_CLOSE_WAIT && newstate == TCP_LAST_ACK) ||
	       (oldstate == TCP_LISTEN && newstate == TCP_CLOSE);
}

static __always_inline void track_listener(__u32 netns, __u16 port, int oldstate, int newstate,
					   const struct owner *o)
{
	struct listener_key key = { .netns = netns, .port = port };
	struct listener *l;

	l = bpf_map_lookup_elem(&listeners, &key);
	if (newstate == TCP_LISTEN) {
		if (l) {
			l->count++;
			if (l->owner.pid != o->pid)
				l->ambiguous = 1;
			return;
		}
		struct listener n = { .count = 1 };
		n.owner = *o;
		bpf_map_update_elem(&listeners, &key, &n, BPF_ANY);
	} else if (oldstate == TCP_LISTEN && l) {
		if (l->count <= 1)
			bpf_map_delete_elem(&listeners, &key);
		else
			l->count--;
	}
}

/* What differs between a transition sent now and one held back. */
struct meta {
	__u64 ts_ns;
	__u64 prev_ns;
	const struct owner *task;
	int oldstate;
	int newstate;
	__u8 flags;
};

static __always_inline __u32 outcome_of(int newstate, __u16 err)
{
	if (newstate != TCP_CLOSE)
		return C_ESTABLISHED;
	switch (err) {
	case 111: /* ECONNREFUSED */
		return C_REFUSED;
	case 110: /* ETIMEDOUT */
		return C_TIMEOUT;
	case 113: /* EHOSTUNREACH */
	case 101: /* ENETUNREACH */
	case 112: /* EHOSTDOWN */
	case 100: /* ENETDOWN */
		return C_UNREACHABLE;
	}
	return C_ABORTED;
}

/* Adds n to counter idx of the destination of an active open. */
static __always_inline void count_dest(struct sock *sk, const struct sock_info *info, __u32 netns,
				       __u16 family, __u16 dport, __u32 idx, __u64 n)
{
	struct dest_key k = {};
	struct dest_counters *c;

	if (idx >= NR_DEST_COUNTERS)
		return;
	k.netns = netns;
	k.family = family;
	k.dport = dport;
	if (info->owner_known) {
		k.owner_known = 1;
		k.cgroup = info->owner.cgroup;
		__builtin_memcpy(k.comm, info->owner.comm, sizeof(k.comm));
	}
	if (family == AF_INET)
		BPF_CORE_READ_INTO((__be32 *)k.daddr, sk, __sk_common.skc_daddr);
	else
		BPF_CORE_READ_INTO(&k.daddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);

	c = bpf_map_lookup_elem(&dests, &k);
	if (!c) {
		struct dest_counters zero = {};

		/* Fails when another CPU made it meanwhile (then the
		 * lookup finds it), or when the map is full. */
		bpf_map_update_elem(&dests, &k, &zero, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&dests, &k);
	}
	if (c) {
		__sync_fetch_and_add(&c->n[idx], n);
		return;
	}
	__u64 *o = bpf_map_lookup_elem(&dests_overflow, &idx);
	if (o)
		*o += n; /* per-CPU slot: no other writer */
}

#define SOCK_DONE 1 /* enum sock_flags, the same since 2.6 */

/*
 * The socket's data bytes, sent and acknowledged and received. The
 * kernel's bytes_acked counts every sequence number acknowledged, so also
 * a connect's SYN (the first, acknowledged by the SYN-ACK; an accepted
 * socket starts after its SYN) and the socket's own FIN once acknowledged
 * (the last: queued on entering fin-wait-1 or last-ack, acknowledged when
 * snd_una reaches write_seq); bytes_received counts the peer's FIN once
 * taken (tcp_fin() marks the socket SOCK_DONE then), never its SYN. state:
 * the socket's state when the counters were read (before the transition,
 * for one). A connect's SYN is taken off only when socktrace knows the
 * socket connected (opener): for one open before the trace it may stay.
 */
static __always_inline void data_bytes(struct sock *sk, int state, __u8 opener, __u64 *acked, __u64 *received)
{
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	__u64 a = BPF_CORE_READ(tp, bytes_acked);
	__u64 r = BPF_CORE_READ(tp, bytes_received);

	if (opener == OPENER_CONNECT && a > 0)
		a--;
	if ((state == TCP_FIN_WAIT1 || state == TCP_FIN_WAIT2 || state == TCP_CLOSING || state == TCP_LAST_ACK) &&
	    a > 0 && BPF_CORE_READ(tp, snd_una) == BPF_CORE_READ(tp, write_seq))
		a--;
	if (r > 0 && (BPF_CORE_READ(sk, __sk_common.skc_flags) & (1UL << SOCK_DONE)))
		r--;
	*acked = a;
	*received = r;
}

/* Reads the socket's TCP counters into e; state and opener as for
 * data_bytes. */
static __always_inline void read_tcp_stats(struct sock *sk, struct event *e, int state, __u8 opener)
{
	struct tcp_sock *tp = (struct tcp_sock *)sk;

	data_bytes(sk, state, opener, &e->bytes_acked, &e->bytes_received);
	e->segs_out = BPF_CORE_READ(tp, segs_out);
	e->segs_in = BPF_CORE_READ(tp, segs_in);
	e->total_retrans = BPF_CORE_READ(tp, total_retrans);
	e->srtt_us = BPF_CORE_READ(tp, srtt_us) >> 3;
	e->flags |= EVENT_TCP_STATS;
}

/* Sends one record, if it passes the filter: a transition, or a record of
 * another kind (then m's states are both the socket's state). */
static __always_inline void emit(struct sock *sk, const struct meta *m, const struct sock_info *next,
				 __u32 netns, __u16 family, __u16 sport, __u16 dport, int cookie_helper,
				 __u8 kind)
{
	__u8 flags = m->flags;
	__u32 lost_slot = kind != KIND_TRANSITION;

	if (kind == KIND_TRANSITION) {
		/* A socket entering or leaving a wanted state: leaving it is
		 * how a connect attempt ends, and user space needs that for
		 * its history. */
		if (!(cfg.state_mask & ((1U << (m->newstate & 31)) | (1U << (m->oldstate & 31)))))
			return;
	} else if (!(cfg.kinds & (1U << (kind & 7)))) {
		return;
	}
	if (!port_match(sport, cfg.sport, cfg.nr_sport) || !port_match(dport, cfg.dport, cfg.nr_dport))
		return;

	if (kind == KIND_TRANSITION && m->oldstate == TCP_SYN_SENT)
		count_dest(sk, next, netns, family, dport, outcome_of(m->newstate, (__u16)BPF_CORE_READ(sk, sk_err)), 1);
	if (kind == KIND_TRANSITION && m->newstate == TCP_CLOSE && next->active) {
		__u64 acked, received;

		data_bytes(sk, m->oldstate, next->opener, &acked, &received);
		count_dest(sk, next, netns, family, dport, C_BYTES_ACKED, acked);
		count_dest(sk, next, netns, family, dport, C_BYTES_RECEIVED, received);
	}

	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__u64 *n = bpf_map_lookup_elem(&lost, &lost_slot);

		/* Per-CPU, but a nested run (the backup, in a softirq) can
		 * come between a load and a store: atomic. */
		if (n)
			__sync_fetch_and_add(n, 1);
		return;
	}

	if (cookie_helper) {
		e->cookie = bpf_get_socket_cookie(sk);
		flags |= EVENT_COOKIE_HELPER;
	} else {
		e->cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
	}
	if (next->owner_known)
		flags |= EVENT_OWNER_KNOWN;

	e->ts_ns = m->ts_ns;
	e->skaddr = (__u64)sk;
	e->prev_ns = m->prev_ns;
	e->netns = netns;
	e->pid = m->task->pid;
	e->tid = m->task->tid;
	e->owner_pid = next->owner.pid;
	e->owner_tid = next->owner.tid;
	e->owner_cgroup = next->owner.cgroup;
	e->uid = BPF_CORE_READ(sk, sk_uid.val);
	e->family = family;
	e->sport = sport;
	e->dport = dport;
	e->sk_err = (__u16)BPF_CORE_READ(sk, sk_err);
	e->oldstate = m->oldstate;
	e->newstate = m->newstate;
	e->flags = flags;
	e->kind = kind;
	e->rst = next->rst;
	e->syn_retrans = next->syn_retrans;
	e->retrans = next->retrans;
	__builtin_memset(e->pad, 0, sizeof(e->pad));
	e->bytes_acked = e->bytes_received = 0;
	e->segs_out = e->segs_in = e->total_retrans = e->srtt_us = 0;
	if (kind != KIND_TRANSITION || m->newstate == TCP_CLOSE || m->oldstate == TCP_SYN_SENT ||
	    m->newstate == TCP_ESTABLISHED)
		read_tcp_stats(sk, e, m->oldstate, next->opener);
	__builtin_memset(e->saddr, 0, sizeof(e->saddr));
	__builtin_memset(e->daddr, 0, sizeof(e->daddr));
	if (family == AF_INET) {
		BPF_CORE_READ_INTO((__be32 *)e->saddr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO((__be32 *)e->daddr, sk, __sk_common.skc_daddr);
	} else {
		BPF_CORE_READ_INTO(&e->saddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&e->daddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	}
	__builtin_memcpy(e->comm, m->task->comm, sizeof(e->comm));
	__builtin_memcpy(e->owner_comm, next->owner.comm, sizeof(e->owner_comm));

	bpf_ringbuf_submit(e, 0);
}

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

/* The socket's netns and family, if it is TCP and passes those filters. */
static __always_inline int tcp_sock_wanted(struct sock *sk, __u32 *netns, __u16 *family)
{
	if (!sk)
		return 0;
	/* A reset may be sent for a time-wait or request socket: those end
	 * with their sock_common, so nothing past it may be read. */
	int state = BPF_CORE_READ(sk, __sk_common.skc_state);
	if (state == TCP_TIME_WAIT || state == TCP_NEW_SYN_RECV)
		return 0;
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
	__u16 dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	int state = BPF_CORE_READ(sk, __sk_common.skc_state);
	struct sock_info *info = sock_entry(skaddr, sport);

	if (!info)
		return 0;
	if (!sport)
		sport = info->sport;
	__u32 idx = NR_DEST_COUNTERS;
	__u64 n = 1;
	switch (kind) {
	case KIND_RETRANSMIT:
		if (state == TCP_SYN_SENT) {
			info->syn_retrans++; /* the socket's lock is held: one writer */
			n += sync_syn_retrans(sk, info);
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
	if (info->active && idx < NR_DEST_COUNTERS &&
	    port_match(sport, cfg.sport, cfg.nr_sport) && port_match(dport, cfg.dport, cfg.nr_dport))
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

static __always_inline int handle(struct sock *sk, int oldstate, int newstate, int cookie_helper, __u8 extra_flags)
{
	__u64 skaddr = (__u64)sk;
	__u64 now = bpf_ktime_get_ns();
	struct sock_info *info, next = {};
	struct owner cur;
	__u64 prev_ns = 0;
	__u8 flags = extra_flags;

	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;

	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family == AF_INET) {
		if (!cfg.want_inet)
			return 0;
	} else if (family == AF_INET6) {
		if (!cfg.want_inet6)
			return 0;
	} else {
		return 0;
	}

	__u32 netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	if (cfg.netns && netns != cfg.netns)
		return 0;

	__u16 sport = local_port(sk);
	__u16 dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));

	/* Remember when the socket changed state and who owns it, whether or
	 * not this transition passes the filter: a later one may. */
	current_owner(&cur);
	info = bpf_map_lookup_elem(&socks, &skaddr);
	if (info) {
		if (info->ts_ns) {
			prev_ns = now - info->ts_ns;
			flags |= EVENT_PREV_KNOWN;
		}
		next = *info;
	}
	/* The kernel's port only (inet_sport keeps it to the end): where it
	 * has none yet, an entry at the socket's address may be another
	 * socket's. */
	if (sport)
		next.sport = sport;
	if (oldstate == TCP_CLOSE && (newstate == TCP_SYN_SENT || newstate == TCP_LISTEN)) {
		/* A new socket (the kernel may reuse the address of one
		 * whose close went unseen): nothing carries over. */
		__builtin_memset(&next, 0, sizeof(next));
		next.sport = sport;
		next.owner = cur;
		next.owner_known = 1;
		next.active = newstate == TCP_SYN_SENT;
		next.opener = newstate == TCP_SYN_SENT ? OPENER_CONNECT : 0;
	} else if (!next.owner_known && in_owner_context(oldstate, newstate)) {
		next.owner = cur;
		next.owner_known = 1;
	} else if (oldstate == TCP_LISTEN && newstate == TCP_SYN_RECV) {
		/* A child of a listener, new too (an entry at its address is a
		 * socket whose close went unseen: it must not pass for an active
		 * open); its owner is the listener's. */
		struct listener_key key = { .netns = netns, .port = sport };
		struct listener *l = bpf_map_lookup_elem(&listeners, &key);

		__builtin_memset(&next, 0, sizeof(next));
		next.sport = sport;
		next.opener = OPENER_ACCEPT;
		if (l && !l->ambiguous) {
			next.owner = l->owner;
			next.owner_known = 1;
		}
	}
	if (oldstate == TCP_SYN_SENT) {
		/* A connect, whether its start was seen or not; its SYN
		 * retransmits, failed ones included. */
		__u16 added = sync_syn_retrans(sk, &next);

		next.opener = OPENER_CONNECT;
		if (added && next.active && port_match(sport, cfg.sport, cfg.nr_sport) &&
		    port_match(dport, cfg.dport, cfg.nr_dport))
			count_dest(sk, &next, netns, family, dport, C_SYN_RETRANS, added);
	} else if (oldstate == TCP_SYN_RECV && !next.opener) {
		/* Accepted (a simultaneous open was in syn-sent first). */
		next.opener = OPENER_ACCEPT;
	}
	if (newstate == TCP_LISTEN || oldstate == TCP_LISTEN)
		track_listener(netns, sport, oldstate, newstate, &next.owner);
	if (oldstate == TCP_SYN_RECV && dport != 0)
		take_synacks(sk, &next, netns, family, sport, dport);
	if (newstate == TCP_CLOSE) {
		if (info)
			bpf_map_delete_elem(&socks, &skaddr);
	} else {
		next.ts_ns = now;
		bpf_map_update_elem(&socks, &skaddr, &next, BPF_ANY);
	}

	if (oldstate == TCP_LISTEN && newstate == TCP_SYN_RECV && dport == 0) {
		/* A clone not filled in yet: see struct held. */
		struct held h = { .ts_ns = now };

		h.task = cur;
		bpf_map_update_elem(&held, &skaddr, &h, BPF_ANY);
		return 0;
	}
	if (oldstate == TCP_SYN_RECV) {
		struct held *h = bpf_map_lookup_elem(&held, &skaddr);

		if (h) {
			struct owner task = h->task;
			struct meta hm = {
				.ts_ns = h->ts_ns,
				.task = &task,
				.oldstate = TCP_LISTEN,
				.newstate = TCP_SYN_RECV,
			};

			bpf_map_delete_elem(&held, &skaddr);
			emit(sk, &hm, &next, netns, family, sport, dport, cookie_helper, KIND_TRANSITION);
		}
	}

	struct meta m = {
		.ts_ns = now,
		.prev_ns = prev_ns,
		.task = &cur,
		.oldstate = oldstate,
		.newstate = newstate,
		.flags = flags,
	};
	emit(sk, &m, &next, netns, family, sport, dport, cookie_helper, KIND_TRANSITION);
	return 0;
}

/*
 * No transition skipped. Since Linux 6.1, __bpf_trace_run() does not run
 * a raw_tp/tp_btf program on a CPU where that same program is already
 * running (prog->active, per program and CPU): a transition made by a
 * softirq that interrupts the program is lost to it (a recursion miss).
 * Each program has its own guard, and the programs of one tracepoint run
 * in the order they were attached. So a backup program, attached after
 * the primary, handles the transitions the primary is skipped for.
 *
 * The backup must tell, for the invocation it runs for, whether the
 * primary ran for it. A flag the primary sets while it runs is not enough:
 * the kernel marks the primary active a little before its first
 * instruction and after its last, and a softirq in those windows left a
 * transition (in the bench, the fin-wait-1 -> fin-wait-2 -> close pair of
 * one arriving FIN) to neither program. Instead the primary, as it ends,
 * pushes what it handled (socket, states, time) on a small per-CPU stack;
 * the backup looks for its own invocation there: found, the primary did
 * it (the backup pops it, with anything above it); not found, the primary
 * was skipped, and the backup emits it.
 *
 * Only runs nested in a backup's run leave entries behind: the kernel
 * skips their backup. So a backup, as it ends, drops whatever was pushed
 * while it ran (and pops its own, if found, with all above it). A burst of
 * such nested runs (a softirq brings many packets) must not push out an
 * entry still waited for: on a full stack the new entry is dropped, and
 * the oldest only when it is older than HANDLED_MAX_AGE_NS (left by a
 * window the backup could not see: its last instructions). Until a
 * backup has run on a CPU, the oldest always goes; the first backup run
 * there empties the stack: what the primary pushed before the backup was
 * attached waits for nothing. An entry that old never
 * matches either; no backup comes that late after its primary (a busy VM
 * can stall a CPU for milliseconds: an age of 10 ms made duplicates).
 * Before 6.1 there is no guard, the primary runs nested itself, user
 * space does not attach the backup, and the stack just stays full. The
 * programs keep no per-CPU scratch space, so a nested run cannot spoil an
 * outer one.
 */
#define HANDLED_DEPTH 8
#define HANDLED_MAX_AGE_NS 1000000000ULL /* 1 s */

struct handled_entry {
	__u64 sk;
	__u64 at;
	__u32 states; /* oldstate << 16 | newstate */
	__u32 pad;
};

struct handled_stack {
	struct handled_entry e[HANDLED_DEPTH];
	__u32 top;
	__u32 ready; /* a backup ran on this CPU: see backup() */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct handled_stack);
} running SEC(".maps");

/* Transitions the backup handled for the primary, per CPU: the primary's
 * recursion misses less these are the transitions both missed. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} rescued SEC(".maps");

static __always_inline int primary(struct sock *sk, int oldstate, int newstate, int cookie_helper)
{
	__u32 zero = 0;

	handle(sk, oldstate, newstate, cookie_helper, 0);
	struct handled_stack *st = bpf_map_lookup_elem(&running, &zero);
	if (!st)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	__u32 top = st->top;
	if (top >= HANDLED_DEPTH) {
		/* Full: of nested runs whose backup the kernel skipped, or
		 * of outer runs still waited for. Only a stale oldest goes,
		 * or any before a backup ever ran here (none waits yet). */
		if (st->ready && now - st->e[0].at < HANDLED_MAX_AGE_NS)
			return 0;
#pragma unroll
		for (int i = 0; i < HANDLED_DEPTH - 1; i++)
			st->e[i] = st->e[i + 1];
		top = HANDLED_DEPTH - 1;
	}
	st->e[top].sk = (__u64)sk;
	st->e[top].states = (__u32)oldstate << 16 | ((__u32)newstate & 0xffff);
	st->e[top].at = now;
	st->top = top + 1;
	return 0;
}

static __always_inline int backup(struct sock *sk, int oldstate, int newstate, int cookie_helper)
{
	__u32 zero = 0;
	struct handled_stack *st = bpf_map_lookup_elem(&running, &zero);

	if (!st)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	__u32 states = (__u32)oldstate << 16 | ((__u32)newstate & 0xffff);
	__u32 top = st->top, keep = top;
	int found = -1;
#pragma unroll
	for (int i = HANDLED_DEPTH - 1; i >= 0; i--) {
		if (found >= 0 || (__u32)i >= top)
			continue;
		struct handled_entry *e = &st->e[i];
		if (e->sk == (__u64)sk && e->states == states && now - e->at < HANDLED_MAX_AGE_NS)
			found = i; /* the primary did this one */
	}
	if (!st->ready) {
		/* The first backup run on this CPU: what is below was pushed
		 * before the backup was attached, and no backup will come for
		 * it. */
		st->ready = 1;
		keep = 0;
		if (found > 0)
			found = 0;
	}
	if (found >= 0) {
		st->top = found;
		return 0;
	}
	__u64 *n = bpf_map_lookup_elem(&rescued, &zero);
	if (n)
		*n += 1;
	handle(sk, oldstate, newstate, cookie_helper, EVENT_BACKUP);
	/* What nested runs pushed meanwhile: their backup was skipped. */
	if (st->top > keep)
		st->top = keep;
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tp_btf_cookie, struct sock *sk, int oldstate, int newstate)
{
	return primary(sk, oldstate, newstate, 1);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tp_btf_core, struct sock *sk, int oldstate, int newstate)
{
	return primary(sk, oldstate, newstate, 0);
}

SEC("raw_tracepoint/inet_sock_set_state")
int raw_tp(struct bpf_raw_tracepoint_args *ctx)
{
	return primary((struct sock *)ctx->args[0], (int)ctx->args[1], (int)ctx->args[2], 0);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tp_btf_cookie_backup, struct sock *sk, int oldstate, int newstate)
{
	return backup(sk, oldstate, newstate, 1);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tp_btf_core_backup, struct sock *sk, int oldstate, int newstate)
{
	return backup(sk, oldstate, newstate, 0);
}

SEC("raw_tracepoint/inet_sock_set_state")
int raw_tp_backup(struct bpf_raw_tracepoint_args *ctx)
{
	return backup((struct sock *)ctx->args[0], (int)ctx->args[1], (int)ctx->args[2], 0);
}

SEC("tracepoint/sock/inet_sock_set_state")
int tracepoint(struct trace_event_raw_inet_sock_set_state *ctx)
{
	return handle((struct sock *)ctx->skaddr, ctx->oldstate, ctx->newstate, 0, 0);
}

/*
 * Retransmits, resets and errors. Each hook has a tp_btf program and a
 * raw_tracepoint one (for kernels whose tracing programs cannot attach);
 * user space attaches what the kernel has, and says what it lacks.
 * tcp_retransmit_skb gained an err argument in 6.17 and then also fires
 * for retransmits that failed: the _err programs count only err == 0 (a
 * SYN's failed attempts are taken from the socket: sync_syn_retrans).
 * tcp_send_reset gained a reason in 6.10 and may then pass a NULL sk.
 */
SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(tp_btf_retransmit, struct sock *sk, struct sk_buff *skb)
{
	return on_packet(sk, KIND_RETRANSMIT);
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(tp_btf_retransmit_err, struct sock *sk, struct sk_buff *skb, int err)
{
	if (err)
		return 0;
	return on_packet(sk, KIND_RETRANSMIT);
}

SEC("tp_btf/tcp_retransmit_synack")
int BPF_PROG(tp_btf_synack, struct sock *sk, struct request_sock *req)
{
	return on_synack(sk, req);
}

SEC("tp_btf/tcp_send_reset")
int BPF_PROG(tp_btf_send_reset, struct sock *sk, struct sk_buff *skb)
{
	return on_packet(sk, KIND_RESET_SENT);
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(tp_btf_receive_reset, struct sock *sk)
{
	return on_packet(sk, KIND_RESET_RECEIVED);
}

SEC("tp_btf/inet_sk_error_report")
int BPF_PROG(tp_btf_error_report, struct sock *sk)
{
	return on_packet(sk, KIND_ERROR);
}

SEC("raw_tracepoint/tcp_retransmit_skb")
int raw_retransmit(struct bpf_raw_tracepoint_args *ctx)
{
	return on_packet((struct sock *)ctx->args[0], KIND_RETRANSMIT);
}

SEC("raw_tracepoint/tcp_retransmit_skb")
int raw_retransmit_err(struct bpf_raw_tracepoint_args *ctx)
{
	if ((int)ctx->args[2])
		return 0;
	return on_packet((struct sock *)ctx->args[0], KIND_RETRANSMIT);
}

SEC("raw_tracepoint/tcp_retransmit_synack")
int raw_synack(struct bpf_raw_tracepoint_args *ctx)
{
	return on_synack((struct sock *)ctx->args[0], (struct request_sock *)ctx->args[1]);
}

SEC("raw_tracepoint/tcp_send_reset")
int raw_send_reset(struct bpf_raw_tracepoint_args *ctx)
{
	return on_packet((struct sock *)ctx->args[0], KIND_RESET_SENT);
}

SEC("raw_tracepoint/tcp_receive_reset")
int raw_receive_reset(struct bpf_raw_tracepoint_args *ctx)
{
	return on_packet((struct sock *)ctx->args[0], KIND_RESET_RECEIVED);
}

SEC("raw_tracepoint/inet_sk_error_report")
int raw_error_report(struct bpf_raw_tracepoint_args *ctx)
{
	return on_packet((struct sock *)ctx->args[0], KIND_ERROR);
}
