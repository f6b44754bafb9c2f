/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The few kernel types socktrace reads, declared for CO-RE.
 *
 * Only the fields used are listed. preserve_access_index makes clang record
 * every access as a relocation by field name, so the loader fixes offsets up
 * against the running kernel's BTF: the layout here does not need to match
 * any kernel. Fields that live in anonymous unions or structs in the kernel
 * are declared flat; CO-RE finds them by name inside anonymous members.
 */
#ifndef SOCKTRACE_KERNEL_H
#define SOCKTRACE_KERNEL_H

#include <linux/types.h>

typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;
typedef __s64 s64;

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct ns_common {
	unsigned int inum;
};

struct net {
	struct ns_common ns;
};

typedef struct {
	struct net *net;
} possible_net_t;

typedef struct {
	s64 counter;
} atomic64_t;

typedef struct {
	__u32 val;
} kuid_t;

struct in6_addr {
	union {
		__u8 u6_addr8[16];
		__be32 u6_addr32[4];
	} in6_u;
};

struct sock_common {
	unsigned long skc_flags; /* sk_flags: enum sock_flags bits */
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	volatile unsigned char skc_state;
	possible_net_t skc_net;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
	atomic64_t skc_cookie;
};

struct sock {
	struct sock_common __sk_common;
	int sk_err;
	kuid_t sk_uid;
	u16 sk_protocol;
};

/* inet_sport is the local port as the socket sends it (network order): set
 * by bind, connect and listen, and kept when the socket lets go of the
 * port, unlike skc_num. It is what the kernel's own inet_sock_set_state
 * tracepoint reports. */
struct inet_sock {
	struct sock sk;
	__be16 inet_sport;
};

/* The counters socktrace reads from a TCP socket. Their offsets changed in
 * 6.8 (the fields were grouped by cache line): CO-RE finds them by name. */
struct tcp_sock {
	u32 segs_in;
	u32 segs_out;
	u64 bytes_received;
	u64 bytes_acked;
	u32 srtt_us; /* smoothed RTT << 3, in microseconds */
	u32 total_retrans;
	u32 snd_una;   /* first byte not acknowledged yet */
	u32 write_seq; /* after the last byte queued (a FIN included) */
};

struct net_device {
	possible_net_t nd_net;
};

/* What the drop hook (drops.h) reads of a packet: its socket, where its
 * headers are, and its protocol (ETH_P_IP, ETH_P_IPV6). */
struct sk_buff {
	struct sock *sk;
	struct net_device *dev;
	unsigned char *head;
	__u16 network_header;
	__be16 protocol;
};

/* A connection in the middle of its handshake, on the listener's side. */
struct request_sock {
	struct sock_common __req_common;
};

/* The classic tracepoint's context (include/trace/events/sock.h). */
struct trace_entry {
	unsigned short type;
	unsigned char flags;
	unsigned char preempt_count;
	int pid;
};

struct trace_event_raw_inet_sock_set_state {
	struct trace_entry ent;
	const void *skaddr;
	int oldstate;
	int newstate;
};

/* For the socket owners iterator (owners.bpf.c): the task and file
 * iter/task_file gives, and the socket behind a file. */
struct task_struct {
	int pid;
	int tgid;
	char comm[16];
};

struct inode {
	unsigned long i_ino;
};

struct file {
	struct inode *f_inode;
};

struct socket {
	struct sock *sk;
};

struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
};

struct bpf_iter__task_file {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
	u32 fd;
	struct file *file;
};

#pragma clang attribute pop

#endif /* SOCKTRACE_KERNEL_H */
