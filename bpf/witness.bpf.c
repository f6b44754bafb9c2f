// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * witness: an independent count for the benchmark and the tests. It counts,
 * for the TCP sockets of one address and/or one network namespace, what the
 * kernel hands to BPF programs on inet_sock_set_state (by old and new state)
 * and on tcp_destroy_sock, and notes the sockets destroyed whose last
 * transition it saw was not into close, with the kernel stack of the
 * destroy. It shares no code with socktrace, and it is attached on its own.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#define TCP_CLOSE 7
#define TCP_LISTEN 10
#define MAX_ODD 64

#define IPPROTO_TCP 6

struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct net {
	struct ns_common ns;
} __attribute__((preserve_access_index));

typedef struct {
	struct net *net;
} __attribute__((preserve_access_index)) possible_net_t;

struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	volatile unsigned char skc_state;
	__be16 skc_dport;
	__u16 skc_num;
	possible_net_t skc_net;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
	__u16 sk_protocol;
} __attribute__((preserve_access_index));

/* The address watched (network order; 0: any) and the network namespace
 * (inode; 0: any), set by user space. */
volatile const __be32 watched_addr;
volatile const __u32 watched_netns;

/* counts[old * 16 + new]: transitions; counts[256 + state]: destroys;
 * counts[272..275], [276..279]: set_state's and destroy's filter (watched). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 280);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

/* The last transition seen of each socket not destroyed, by key: the
 * socket cookie where tracing programs may ask for it (5.12+), else the
 * socket's address. */
struct seen {
	__u32 last; /* old << 8 | new */
	__u16 sport, dport; /* host order */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1 << 20);
	__type(key, __u64);
	__type(value, struct seen);
} last SEC(".maps");

struct odd {
	__u64 cookie;
	__u64 at_ns;
	__u32 last; /* old << 8 | new, 0xffff: none seen */
	__u32 state; /* at destroy */
	__s64 stack;
};

/* A queue, not an array indexed by a counter: no atomic fetch before 5.12. */
struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, MAX_ODD);
	__type(value, struct odd);
} odds SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, MAX_ODD);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, 127 * sizeof(__u64));
} stacks SEC(".maps");

static __always_inline void count(__u32 k)
{
	__u64 *v = bpf_map_lookup_elem(&counts, &k);

	if (v)
		__sync_fetch_and_add(v, 1);
}

/* Whether sk is watched; counts at base the invocations (+0), those of
 * another protocol (+1), those whose netns read as 0 (+2) and those of
 * another netns (+3). */
static __always_inline int watched(struct sock *sk, __u32 base)
{
	count(base);
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP) {
		count(base + 1);
		return 0;
	}
	if (watched_netns) {
		__u32 inum = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
		if (inum != watched_netns) {
			count(base + (inum ? 3 : 2));
			return 0;
		}
	}
	return !watched_addr || sk->__sk_common.skc_rcv_saddr == watched_addr ||
	       sk->__sk_common.skc_daddr == watched_addr;
}

static __always_inline void on_set_state(struct sock *sk, int oldstate, int newstate, __u64 key)
{
	count((oldstate & 15) * 16 + (newstate & 15));
	struct seen v = {
		.last = (oldstate & 0xff) << 8 | (newstate & 0xff),
		.sport = BPF_CORE_READ(sk, __sk_common.skc_num),
		.dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport)),
	};
	bpf_map_update_elem(&last, &key, &v, BPF_ANY);
}

static __always_inline void on_destroy(void *ctx, struct sock *sk, __u64 key)
{
	__u32 state = sk->__sk_common.skc_state;
	count(256 + (state & 15));
	struct seen *v = bpf_map_lookup_elem(&last, &key);
	__u32 lastv = v ? v->last : 0xffff;
	if (v)
		bpf_map_delete_elem(&last, &key);
	if ((lastv & 0xff) == TCP_CLOSE || (lastv & 0xff) == TCP_LISTEN)
		return;
	struct odd o = {
		.cookie = key,
		.at_ns = bpf_ktime_get_ns(),
		.last = lastv,
		.state = state,
		.stack = bpf_get_stackid(ctx, &stacks, 0),
	};
	bpf_map_push_elem(&odds, &o, 0); /* full: dropped */
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(set_state, struct sock *sk, int oldstate, int newstate)
{
	if (watched(sk, 272))
		on_set_state(sk, oldstate, newstate, bpf_get_socket_cookie(sk));
	return 0;
}

SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(destroy, struct sock *sk)
{
	if (watched(sk, 276))
		on_destroy(ctx, sk, bpf_get_socket_cookie(sk));
	return 0;
}

/* The same keyed by the socket's address, for kernels whose tracing
 * programs may not ask for a cookie (before 5.12). */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(set_state_addr, struct sock *sk, int oldstate, int newstate)
{
	if (watched(sk, 272))
		on_set_state(sk, oldstate, newstate, (__u64)sk);
	return 0;
}

SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(destroy_addr, struct sock *sk)
{
	if (watched(sk, 276))
		on_destroy(ctx, sk, (__u64)sk);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
