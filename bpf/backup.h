/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The primary program and its backup: no transition skipped. Since Linux 6.1, __bpf_trace_run() does not run
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
#ifndef SOCKTRACE_BACKUP_H
#define SOCKTRACE_BACKUP_H

#include "transitions.h"

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

/* The primary program: handles the transition, then pushes it on the
 * stack of those handled for its backup to find. */
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

/* The backup program: handles the transition only if the primary did not
 * (it is not on the stack). */
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

#endif /* SOCKTRACE_BACKUP_H */
