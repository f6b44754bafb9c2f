/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The in-kernel counters by destination of active opens (connect): how
 * connect attempts ended, their retransmits, resets and data bytes.
 * Counted whether or not the ring buffer had room.
 */
#ifndef SOCKTRACE_DESTS_H
#define SOCKTRACE_DESTS_H

#include "common.h"

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

/* How a connect attempt ended: the counter of a socket leaving syn-sent
 * for newstate with error err. */
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

#endif /* SOCKTRACE_DESTS_H */
