/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * A TCP state transition, from inet_sock_set_state: handle() keeps the
 * socket's entry (owner, opener, handshake retransmits) and the table of
 * listeners up to date, then sends the transition.
 */
#ifndef SOCKTRACE_TRANSITIONS_H
#define SOCKTRACE_TRANSITIONS_H

#include "common.h"
#include "dests.h"
#include "handshake.h"
#include "record.h"

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

/* Copies the socket's entry into next, if it has one, and says how long
 * the socket spent in its old state. */
static __always_inline struct sock_info *recall(__u64 skaddr, __u64 now, struct sock_info *next, __u64 *prev_ns,
						__u8 *flags)
{
	struct sock_info *info = bpf_map_lookup_elem(&socks, &skaddr);

	if (info) {
		if (info->ts_ns) {
			*prev_ns = now - info->ts_ns;
			*flags |= EVENT_PREV_KNOWN;
		}
		*next = *info;
	}
	return info;
}

/* What the transition tells about the socket: its port, whether it is
 * new, and who owns it (the task on the CPU, or its listener's). */
static __always_inline void learn_socket(struct sock_info *next, const struct owner *cur, __u32 netns, __u16 sport,
					 int oldstate, int newstate)
{
	/* The kernel's port only (inet_sport keeps it to the end): where it
	 * has none yet, an entry at the socket's address may be another
	 * socket's. */
	if (sport)
		next->sport = sport;
	if (oldstate == TCP_CLOSE && (newstate == TCP_SYN_SENT || newstate == TCP_LISTEN)) {
		/* A new socket (the kernel may reuse the address of one
		 * whose close went unseen): nothing carries over. */
		__builtin_memset(next, 0, sizeof(*next));
		next->sport = sport;
		next->owner = *cur;
		next->owner_known = 1;
		next->active = newstate == TCP_SYN_SENT;
		next->opener = newstate == TCP_SYN_SENT ? OPENER_CONNECT : 0;
	} else if (!next->owner_known && in_owner_context(oldstate, newstate)) {
		next->owner = *cur;
		next->owner_known = 1;
	} else if (oldstate == TCP_LISTEN && newstate == TCP_SYN_RECV) {
		/* A child of a listener, new too (an entry at its address is a
		 * socket whose close went unseen: it must not pass for an active
		 * open); its owner is the listener's. */
		struct listener_key key = { .netns = netns, .port = sport };
		struct listener *l = bpf_map_lookup_elem(&listeners, &key);

		__builtin_memset(next, 0, sizeof(*next));
		next->sport = sport;
		next->opener = OPENER_ACCEPT;
		if (l && !l->ambiguous) {
			next->owner = l->owner;
			next->owner_known = 1;
		}
	}
}

/* A socket leaving its handshake: how it was opened, and for a connect
 * the SYN retransmits the hook missed. */
static __always_inline void end_handshake(struct sock *sk, struct sock_info *next, __u32 netns, __u16 family,
					  __u16 sport, __u16 dport, int oldstate)
{
	if (oldstate == TCP_SYN_SENT) {
		/* A connect, whether its start was seen or not; its SYN
		 * retransmits, failed ones included. */
		__u16 added = sync_syn_retrans(sk, next);

		next->opener = OPENER_CONNECT;
		if (added && next->active && ports_match(sport, dport))
			count_dest(sk, next, netns, family, dport, C_SYN_RETRANS, added);
	} else if (oldstate == TCP_SYN_RECV && !next->opener) {
		/* Accepted (a simultaneous open was in syn-sent first). */
		next->opener = OPENER_ACCEPT;
	}
}

/* Stores the socket's entry, or drops it at close. */
static __always_inline void remember(__u64 skaddr, const struct sock_info *info, struct sock_info *next, __u64 now,
				     int newstate)
{
	if (newstate == TCP_CLOSE) {
		if (info)
			bpf_map_delete_elem(&socks, &skaddr);
	} else {
		next->ts_ns = now;
		bpf_map_update_elem(&socks, &skaddr, next, BPF_ANY);
	}
}

/* Holds a listener's child whose clone is not filled in yet (see struct
 * held); returns whether it did. */
static __always_inline int hold_unfilled_clone(__u64 skaddr, __u64 now, const struct owner *cur, int oldstate,
					       int newstate, __u16 dport)
{
	if (oldstate != TCP_LISTEN || newstate != TCP_SYN_RECV || dport != 0)
		return 0;
	struct held h = { .ts_ns = now };

	h.task = *cur;
	bpf_map_update_elem(&held, &skaddr, &h, BPF_ANY);
	return 1;
}

/* Sends the held listening -> syn-recv transition of a socket now
 * leaving syn-recv, with the socket's final addresses and cookie. */
static __always_inline void send_held(struct sock *sk, __u64 skaddr, const struct sock_info *next, __u32 netns,
				      __u16 family, __u16 sport, __u16 dport, int cookie_helper)
{
	struct held *h = bpf_map_lookup_elem(&held, &skaddr);

	if (!h)
		return;
	struct owner task = h->task;
	struct meta hm = {
		.ts_ns = h->ts_ns,
		.task = &task,
		.oldstate = TCP_LISTEN,
		.newstate = TCP_SYN_RECV,
	};

	bpf_map_delete_elem(&held, &skaddr);
	emit(sk, &hm, next, netns, family, sport, dport, cookie_helper, KIND_TRANSITION);
}

/* One transition of socket sk; extra_flags: EVENT_BACKUP when the backup
 * program runs it. */
static __always_inline int handle(struct sock *sk, int oldstate, int newstate, int cookie_helper, __u8 extra_flags)
{
	__u64 skaddr = (__u64)sk;
	__u64 now = bpf_ktime_get_ns();
	struct sock_info *info, next = {};
	struct owner cur;
	__u64 prev_ns = 0;
	__u8 flags = extra_flags;
	__u32 netns;
	__u16 family;

	if (!sock_wanted(sk, &netns, &family))
		return 0;
	__u16 sport = local_port(sk);
	__u16 dport = remote_port(sk);

	/* Remember when the socket changed state and who owns it, whether or
	 * not this transition passes the filter: a later one may. */
	current_owner(&cur);
	info = recall(skaddr, now, &next, &prev_ns, &flags);
	learn_socket(&next, &cur, netns, sport, oldstate, newstate);
	end_handshake(sk, &next, netns, family, sport, dport, oldstate);
	if (newstate == TCP_LISTEN || oldstate == TCP_LISTEN)
		track_listener(netns, sport, oldstate, newstate, &next.owner);
	if (oldstate == TCP_SYN_RECV && dport != 0)
		take_synacks(sk, &next, netns, family, sport, dport);
	remember(skaddr, info, &next, now, newstate);

	if (hold_unfilled_clone(skaddr, now, &cur, oldstate, newstate, dport))
		return 0;
	if (oldstate == TCP_SYN_RECV)
		send_held(sk, skaddr, &next, netns, family, sport, dport, cookie_helper);

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

#endif /* SOCKTRACE_TRANSITIONS_H */
