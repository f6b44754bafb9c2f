/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Types shared by the BPF program and Go. bpf2go turns them into Go types
 * (socktraceEvent, socktraceConfig, socktraceDestKey, socktraceDestCounters), so this file is the one definition of
 * the wire format: change it here and run `make generate`.
 */
#ifndef SOCKTRACE_H
#define SOCKTRACE_H

#define TASK_COMM_LEN 16
#define MAX_PORT_RANGES 16

/* event.flags */
#define EVENT_OWNER_KNOWN (1 << 0)  /* owner_* name the process that owns the socket */
#define EVENT_PREV_KNOWN (1 << 1)   /* prev_ns is the time spent in oldstate */
#define EVENT_COOKIE_HELPER (1 << 2) /* cookie came from bpf_get_socket_cookie() */
#define EVENT_TCP_STATS (1 << 3)    /* bytes_*, segs_*, total_retrans, srtt_us are the socket's */
#define EVENT_BACKUP (1 << 4)       /* sent by the backup program: the kernel skipped the primary */

/* event.kind: what a ring buffer record is. */
enum event_kind {
	KIND_TRANSITION = 0, /* oldstate -> newstate */
	KIND_RETRANSMIT,     /* a segment (or SYN) retransmitted; newstate = state then */
	KIND_RESET_SENT,     /* an RST sent on the socket */
	KIND_RESET_RECEIVED, /* an RST received */
	KIND_ERROR,          /* an error reported on the socket (sk_err) */
	KIND_DROP,           /* a packet of the socket dropped on this host (not sent yet) */
	NR_KINDS,
};

/* event.rst and the per-socket record of resets. */
#define RST_SENT (1 << 0)
#define RST_RECEIVED (1 << 1)

/* event.drop_dir and sock_info.drop_dir: the direction of the socket's
 * last packet dropped on this host. */
#define DROP_SENT 1
#define DROP_RECEIVED 2

/* One record of the ring buffer: a TCP state transition, or (when asked
 * for) a retransmit, reset or error of a socket. 192 bytes. */
struct event {
	__u64 ts_ns;   /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u64 cookie;  /* socket cookie, the id sock_diag reports; 0 if unknown */
	__u64 skaddr;  /* kernel address of the socket */
	__u64 prev_ns; /* time spent in oldstate, valid with EVENT_PREV_KNOWN */
	__u64 bytes_acked;    /* tcp_sock's less a connect's SYN and the FIN: data bytes, with EVENT_TCP_STATS */
	__u64 bytes_received; /* tcp_sock's less the peer's FIN: data bytes, with EVENT_TCP_STATS */
	__u64 owner_cgroup;   /* owning process's cgroup v2 id, valid with EVENT_OWNER_KNOWN */
	__u64 drop_reason;    /* the last drop's enum skb_drop_reason, or (kernels before 5.17) the
			       * address of the function that freed it; valid with drops > 0 */
	__u32 netns;   /* network namespace inode */
	__u32 pid;     /* task on CPU: tgid (0 in softirq on an idle CPU) */
	__u32 tid;
	__u32 owner_pid; /* owning process, valid with EVENT_OWNER_KNOWN */
	__u32 owner_tid;
	__u32 uid;       /* socket owner uid (sk_uid) */
	__u32 segs_out;      /* tcp_sock, with EVENT_TCP_STATS */
	__u32 segs_in;       /* tcp_sock, with EVENT_TCP_STATS */
	__u32 total_retrans; /* tcp_sock, with EVENT_TCP_STATS */
	__u32 srtt_us;       /* smoothed RTT in microseconds (tcp_sock.srtt_us >> 3) */
	__u32 retrans;       /* retransmits of data seen by socktrace's hook */
	__u16 family;    /* AF_INET or AF_INET6 */
	__u16 sport;     /* local port, host order */
	__u16 dport;     /* remote port, host order */
	__u16 sk_err;    /* sk->sk_err: why a socket closed (ECONNREFUSED, ETIMEDOUT...) */
	__u16 syn_retrans; /* SYN retransmissions tried (or SYN-ACKs retransmitted) */
	__u8 oldstate;
	__u8 newstate;
	__u8 flags;
	__u8 kind;       /* enum event_kind */
	__u8 rst;        /* RST_SENT, RST_RECEIVED seen on the socket so far */
	__u8 drop_dir;   /* DROP_SENT or DROP_RECEIVED: the last drop's direction */
	__u32 drops;     /* the socket's packets dropped on this host (kfree_skb) */
	__u8 saddr[16]; /* local address: IPv4 in the first 4 bytes */
	__u8 daddr[16]; /* remote address */
	char comm[TASK_COMM_LEN];       /* task on CPU */
	char owner_comm[TASK_COMM_LEN]; /* owning process */
};

/* The in-kernel counters of one destination (struct dest_key), by index:
 * how connect attempts ended, then what happened on the wire. */
enum dest_counter {
	C_ESTABLISHED = 0,
	C_REFUSED,     /* ECONNREFUSED: the peer answered RST */
	C_TIMEOUT,     /* ETIMEDOUT: no answer to the SYNs */
	C_UNREACHABLE, /* EHOSTUNREACH, ENETUNREACH, EHOSTDOWN, ENETDOWN */
	C_ABORTED,     /* any other end: the application gave up... */
	C_SYN_RETRANS, /* SYN retransmissions tried */
	C_RETRANS,     /* data segments retransmitted */
	C_RST_SENT,    /* RSTs sent on connected sockets */
	C_RST_RECEIVED,
	C_BYTES_ACKED,    /* data bytes sent and acknowledged, at close */
	C_BYTES_RECEIVED, /* data bytes received, at close */
	NR_DEST_COUNTERS,
};

/* Key of the in-kernel per-destination counters: the destination of
 * active opens (connect) and the owning process. Counted whether or not
 * the ring buffer had room, so the counts stay exact under overload.
 * 56 bytes. */
struct dest_key {
	__u8 daddr[16]; /* IPv4 in the first 4 bytes */
	__u32 netns;
	__u16 family;
	__u16 dport;
	__u8 owner_known;
	__u8 pad[7];
	__u64 cgroup;             /* owning process's cgroup v2 id, if owner_known */
	char comm[TASK_COMM_LEN]; /* owning process, if owner_known */
};

struct dest_counters {
	__u64 n[NR_DEST_COUNTERS];
};

/* Key of the in-kernel counters of packets dropped on this host, by
 * destination of active opens, reason and direction. 72 bytes. */
struct drop_dest_key {
	struct dest_key dest;
	__u64 reason; /* as event.drop_reason */
	__u8 dir;     /* DROP_SENT, DROP_RECEIVED */
	__u8 pad[7];
};

/* Key of the counters of TCP packets dropped of no socket socktrace
 * follows (none, or one filtered out): by reason and namespace. */
struct drop_other_key {
	__u64 reason; /* as event.drop_reason */
	__u32 netns;  /* of the device, or 0 if unknown */
	__u32 pad;
};

struct port_range {
	__u16 lo;
	__u16 hi;
};

/* Filter set by user space before load (read-only data, so the verifier
 * prunes what is not used). A transition is sent when all parts match. */
struct config {
	__u32 state_mask; /* bit (1 << state): keep transitions into or out of it */
	__u32 netns;      /* 0: every namespace */
	__u8 want_inet;
	__u8 want_inet6;
	__u8 nr_sport; /* 0: any local port */
	__u8 nr_dport; /* 0: any remote port */
	__u8 kinds;    /* bit (1 << kind): also send these records (retransmit, reset, error, drop) */
	__u8 drop_tuples; /* send SYNs and SYN-ACKs dropped of no socket, with their 4-tuple (drops.h) */
	__u8 pad[2];
	__u32 drop_consumed;  /* the kernel's SKB_CONSUMED (not a drop), ~0 if it has none */
	__u32 drop_no_socket; /* the kernel's SKB_DROP_REASON_NO_SOCKET, ~0 if it has none */
	__u32 drop_purge;     /* the kernel's SKB_DROP_REASON_QUEUE_PURGE (a socket's queue freed as it is destroyed: not a drop on the way), ~0 if none */
	__u32 pad2;
	/* Kernels without reasons: the locations (function ranges [lo, hi))
	 * whose drops are of no socket (tcp_v4_rcv, tcp_v6_rcv); 0 if none. */
	__u64 drop_quiet_lo[2];
	__u64 drop_quiet_hi[2];
	struct port_range sport[MAX_PORT_RANGES];
	struct port_range dport[MAX_PORT_RANGES];
};

#endif /* SOCKTRACE_H */
