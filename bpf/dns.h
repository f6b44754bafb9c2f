/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The record dns.bpf.c sends for each DNS answer delivered to a local
 * socket; bpf2go makes it dnsRecord in internal/dnswatch.
 */
#ifndef SOCKTRACE_DNS_H
#define SOCKTRACE_DNS_H

#define DNS_TASK_COMM_LEN 16
/* The bytes of a DNS message kept (a power of two): a whole answer well
 * beyond the size EDNS recommends (1232); longer answers are cut, and
 * user space reads the records before the cut. */
#define DNS_MAX 2048

/* dns_record.flags */
#define DNS_OWNER_KNOWN (1 << 0) /* owner_* name who sent the query (connect/sendmsg to port 53) */
#define DNS_TCP (1 << 1)         /* came over TCP: data starts with the 2-byte length */

struct dns_owner {
	__u64 cgroup; /* cgroup v2 id of the process that sent the query */
	__u32 tgid;
	__u32 tid; /* the thread: it may live in another network namespace */
	char comm[DNS_TASK_COMM_LEN];
};

/* One DNS answer, as the socket it was delivered to received it. */
struct dns_record {
	__u64 ts_ns;      /* bpf_ktime_get_ns() */
	__u64 cookie;     /* the receiving socket's cookie */
	__u64 cgroup;     /* the receiving socket's cgroup v2 id */
	__u32 len;        /* DNS bytes in the packet (with TCP's length prefix) */
	__u32 caplen;     /* of them in data[] */
	__u16 family;     /* AF_INET, AF_INET6 */
	__u16 sport;      /* the server's port (53), host order */
	__u16 dport;      /* the receiving socket's port */
	__u8 flags;
	__u8 pad;
	__u8 saddr[16];   /* the server that answered: IPv4 in the first 4 bytes */
	__u8 daddr[16];   /* the receiving address */
	struct dns_owner owner; /* valid with DNS_OWNER_KNOWN */
	__u8 data[DNS_MAX];
};

#endif /* SOCKTRACE_DNS_H */
