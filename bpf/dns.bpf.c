// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Passive DNS: the answers delivered to local sockets, in every network
 * namespace, and who asked.
 *
 * A cgroup_skb/ingress program on the cgroup2 root sees every packet the
 * kernel delivers to a socket of any process (all processes live under
 * the root), whatever its network namespace, after IP reassembly and the
 * socket lookup, so only packets that reach a socket. It keeps those from
 * port 53 (UDP, and TCP segments that start with a message) and copies
 * the DNS message with bpf_skb_load_bytes, which reads paged and
 * fragmented packets too (a tracing hook on the receive path would see
 * only the linear part). It runs in softirq, so it cannot tell which
 * process receives: cgroup/connect4/6 and cgroup/sendmsg4/6 programs,
 * which run in the process that sends the query to port 53, remember it
 * by socket cookie, and the ingress program looks the cookie up.
 *
 * Answers go through their own small ring buffer, so a flood of them
 * cannot crowd out state transitions; when it is full they are counted
 * (lost) and dropped, never the packet: every program returns 1 (allow).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "dns.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const struct dns_record *unused_dns_record __attribute__((unused));

#define AF_INET 2
#define AF_INET6 10

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1024 * 1024);
} dns_events SEC(".maps");

/* Counters, per CPU: [0] answers sent, [1] answers lost (ring full). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} dns_counts SEC(".maps");

/* Who sent a query, by socket cookie. LRU: a resolver's sockets are
 * short-lived and nobody tells us when they close. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct dns_owner);
} dns_askers SEC(".maps");

static __always_inline void count(__u32 i)
{
	__u64 *n = bpf_map_lookup_elem(&dns_counts, &i);
	/* Per-CPU, but an ingress run (softirq) can come between a
	 * sendmsg run's load and store on the same CPU: atomic. */
	if (n)
		__sync_fetch_and_add(n, 1);
}

static __always_inline void remember(struct bpf_sock_addr *ctx)
{
	struct dns_owner o = {};
	__u64 cookie, id;

	if (ctx->user_port != bpf_htons(53))
		return;
	cookie = bpf_get_socket_cookie(ctx);
	id = bpf_get_current_pid_tgid();
	o.tgid = id >> 32;
	o.tid = (__u32)id;
	o.cgroup = bpf_get_current_cgroup_id();
	bpf_get_current_comm(o.comm, sizeof(o.comm));
	bpf_map_update_elem(&dns_askers, &cookie, &o, BPF_ANY);
}

SEC("cgroup/connect4")
int dns_connect4(struct bpf_sock_addr *ctx)
{
	remember(ctx);
	return 1;
}

SEC("cgroup/connect6")
int dns_connect6(struct bpf_sock_addr *ctx)
{
	remember(ctx);
	return 1;
}

SEC("cgroup/sendmsg4")
int dns_sendmsg4(struct bpf_sock_addr *ctx)
{
	remember(ctx);
	return 1;
}

SEC("cgroup/sendmsg6")
int dns_sendmsg6(struct bpf_sock_addr *ctx)
{
	remember(ctx);
	return 1;
}

SEC("cgroup_skb/ingress")
int dns_ingress(struct __sk_buff *skb)
{
	struct dns_record *r;
	struct dns_owner *o;
	__u8 hdr[40];
	__u32 off, proto, family, len;
	__u64 n64;
	__u16 ports[2];
	__u8 flags = 0;
	__u64 cookie;

	/* cgroup_skb data starts at the network header. */
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		if (bpf_skb_load_bytes(skb, 0, hdr, 20))
			return 1;
		off = (hdr[0] & 0x0f) * 4;
		proto = hdr[9];
		family = AF_INET;
		if (off < 20)
			return 1;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		if (bpf_skb_load_bytes(skb, 0, hdr, 40))
			return 1;
		off = 40;
		proto = hdr[6]; /* extension headers: not followed */
		family = AF_INET6;
	} else {
		return 1;
	}
	if (proto != IPPROTO_UDP && proto != IPPROTO_TCP)
		return 1;
	if (bpf_skb_load_bytes(skb, off, ports, 4))
		return 1;
	if (ports[0] != bpf_htons(53))
		return 1;
	if (proto == IPPROTO_UDP) {
		off += 8;
	} else {
		__u8 doff;
		if (bpf_skb_load_bytes(skb, off + 12, &doff, 1))
			return 1;
		off += (doff >> 4) * 4;
		flags |= DNS_TCP;
	}
	if (skb->len <= off)
		return 1;
	len = skb->len - off;
	/* A DNS header is 12 bytes (14 with TCP's length); QR says answer. */
	if (len < (flags & DNS_TCP ? 14 : 12))
		return 1;
	{
		__u8 b3;
		if (bpf_skb_load_bytes(skb, off + (flags & DNS_TCP ? 4 : 2), &b3, 1))
			return 1;
		if (!(b3 & 0x80))
			return 1; /* a query, not an answer */
	}

	r = bpf_ringbuf_reserve(&dns_events, sizeof(*r), 0);
	if (!r) {
		count(1);
		return 1;
	}
	/* Bounds every verifier since 5.10 can follow: 1..DNS_MAX (a power
	 * of two), by a mask rather than a compare it may not track. */
	n64 = len;
	if (n64 > DNS_MAX)
		n64 = DNS_MAX;
	asm volatile("" : "+r"(n64));
	n64 = ((n64 - 1) & (DNS_MAX - 1)) + 1;
	if (bpf_skb_load_bytes(skb, off, r->data, n64)) {
		bpf_ringbuf_discard(r, 0);
		return 1;
	}
	r->ts_ns = bpf_ktime_get_ns();
	cookie = bpf_get_socket_cookie(skb);
	r->cookie = cookie;
	r->cgroup = bpf_skb_cgroup_id(skb);
	r->len = len;
	r->caplen = n64;
	r->family = family;
	r->sport = bpf_ntohs(ports[0]);
	r->dport = bpf_ntohs(ports[1]);
	__builtin_memset(r->saddr, 0, sizeof(r->saddr));
	__builtin_memset(r->daddr, 0, sizeof(r->daddr));
	if (family == AF_INET) {
		__builtin_memcpy(r->saddr, hdr + 12, 4);
		__builtin_memcpy(r->daddr, hdr + 16, 4);
	} else {
		__builtin_memcpy(r->saddr, hdr + 8, 16);
		__builtin_memcpy(r->daddr, hdr + 24, 16);
	}
	o = bpf_map_lookup_elem(&dns_askers, &cookie);
	if (o) {
		r->owner = *o;
		flags |= DNS_OWNER_KNOWN;
	} else {
		__builtin_memset(&r->owner, 0, sizeof(r->owner));
	}
	r->flags = flags;
	r->pad = 0;
	bpf_ringbuf_submit(r, 0);
	count(0);
	return 1;
}
