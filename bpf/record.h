/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * One record to user space: a struct event in the ring buffer, or a count
 * of those lost to a full ring buffer. emit() is where every program ends.
 */
#ifndef SOCKTRACE_RECORD_H
#define SOCKTRACE_RECORD_H

#include "common.h"
#include "dests.h"

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

/* What differs between a transition sent now and one held back. */
struct meta {
	__u64 ts_ns;
	__u64 prev_ns;
	const struct owner *task;
	int oldstate;
	int newstate;
	__u8 flags;
};

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

/* Whether a record passes the filter: its kind (or, for a transition,
 * a state it enters or leaves: leaving a wanted state is how a connect
 * attempt ends, and user space needs that for its history) and ports. */
static __always_inline int record_wanted(const struct meta *m, __u16 sport, __u16 dport, __u8 kind)
{
	if (kind == KIND_TRANSITION) {
		if (!(cfg.state_mask & ((1U << (m->newstate & 31)) | (1U << (m->oldstate & 31)))))
			return 0;
	} else if (!(cfg.kinds & (1U << (kind & 7)))) {
		return 0;
	}
	return ports_match(sport, dport);
}

/* Counts, by destination, how a connect attempt ended and what a
 * connection moved when it closed. */
static __always_inline void count_transition(struct sock *sk, const struct meta *m, const struct sock_info *next,
					     __u32 netns, __u16 family, __u16 dport)
{
	if (m->oldstate == TCP_SYN_SENT)
		count_dest(sk, next, netns, family, dport, outcome_of(m->newstate, (__u16)BPF_CORE_READ(sk, sk_err)), 1);
	if (m->newstate == TCP_CLOSE && next->active) {
		__u64 acked, received;

		data_bytes(sk, m->oldstate, next->opener, &acked, &received);
		count_dest(sk, next, netns, family, dport, C_BYTES_ACKED, acked);
		count_dest(sk, next, netns, family, dport, C_BYTES_RECEIVED, received);
	}
}

/* A record of the ring buffer, or NULL with the loss counted in its slot
 * ([0] transitions, [1] other kinds). */
static __always_inline struct event *reserve_record(__u8 kind)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		__u32 slot = kind != KIND_TRANSITION;
		__u64 *n = bpf_map_lookup_elem(&lost, &slot);

		/* Per-CPU, but a nested run (the backup, in a softirq) can
		 * come between a load and a store: atomic. */
		if (n)
			__sync_fetch_and_add(n, 1);
	}
	return e;
}

/* The record's socket, task, owner and states. */
static __always_inline void fill_header(struct event *e, struct sock *sk, const struct meta *m,
					const struct sock_info *next, __u32 netns, __u16 family, __u16 sport,
					__u16 dport, int cookie_helper, __u8 kind)
{
	__u8 flags = m->flags;

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
	e->drops = next->drops;
	e->drop_reason = next->drop_reason;
	e->drop_dir = next->drop_dir;
}

/* The socket's TCP counters, where a record needs them (a packet
 * event, a close, a connect's end, an establishment); zero elsewhere. */
static __always_inline void fill_stats(struct event *e, struct sock *sk, const struct meta *m,
				       const struct sock_info *next, __u8 kind)
{
	e->bytes_acked = e->bytes_received = 0;
	e->segs_out = e->segs_in = e->total_retrans = e->srtt_us = 0;
	if (kind != KIND_TRANSITION || m->newstate == TCP_CLOSE || m->oldstate == TCP_SYN_SENT ||
	    m->newstate == TCP_ESTABLISHED)
		read_tcp_stats(sk, e, m->oldstate, next->opener);
}

/* The record's addresses and process names. */
static __always_inline void fill_names(struct event *e, struct sock *sk, const struct meta *m,
				       const struct sock_info *next, __u16 family)
{
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
}

/* Sends one record, if it passes the filter: a transition, or a record of
 * another kind (then m's states are both the socket's state). */
static __always_inline void emit(struct sock *sk, const struct meta *m, const struct sock_info *next,
				 __u32 netns, __u16 family, __u16 sport, __u16 dport, int cookie_helper,
				 __u8 kind)
{
	if (!record_wanted(m, sport, dport, kind))
		return;
	if (kind == KIND_TRANSITION)
		count_transition(sk, m, next, netns, family, dport);

	struct event *e = reserve_record(kind);
	if (!e)
		return;
	fill_header(e, sk, m, next, netns, family, sport, dport, cookie_helper, kind);
	fill_stats(e, sk, m, next, kind);
	fill_names(e, sk, m, next, family);
	bpf_ringbuf_submit(e, 0);
}

#endif /* SOCKTRACE_RECORD_H */
