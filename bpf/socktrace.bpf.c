// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * socktrace: every TCP state transition, and on request the retransmits,
 * resets and errors of TCP sockets, from tracepoints to user space through
 * a ring buffer. This file lists the programs; what they do is in:
 *   common.h      constants, the filter (cfg), socket owners, the socket table
 *   dests.h       counters by destination of connects
 *   record.h      one record to the ring buffer (emit)
 *   handshake.h   SYN and SYN-ACK retransmits of a handshake
 *   transitions.h one state transition (handle)
 *   backup.h      the primary program and its backup, so none is skipped
 *   packets.h     retransmit, reset and error hooks
 *   drops.h       packets dropped on this host (skb:kfree_skb)
 * Everything about a socket is read with CO-RE.
 *
 * The programs, and when user space (internal/events) attaches them:
 *
 * inet_sock_set_state, one primary of the first kind the kernel loads, in
 * this order (of the kind --attach names, if it does):
 *   tp_btf_cookie  tp_btf, cookie from bpf_get_socket_cookie() (5.12+)
 *   tp_btf_core    tp_btf, cookie read from sk->skc_cookie (5.5+)
 *   raw_tp         raw_tracepoint (4.17+, no BTF-typed arguments)
 *   tracepoint     classic tracepoint (needs tracefs); it has no backup
 * and, on 6.1 and later, attached after it, its backup:
 *   tp_btf_cookie_backup, tp_btf_core_backup, raw_tp_backup
 *
 * Each packet hook, attached before the primary, as tp_btf when the
 * primary is (else raw_tracepoint, also when tp_btf fails); one that the
 * kernel lacks is left out and reported:
 *   tcp_retransmit_skb     tp_btf_retransmit, raw_retransmit
 *                          (6.17+, with its err argument:
 *                          tp_btf_retransmit_err, raw_retransmit_err)
 *   tcp_retransmit_synack  tp_btf_synack, raw_synack
 *   tcp_send_reset         tp_btf_send_reset, raw_send_reset
 *   tcp_receive_reset      tp_btf_receive_reset, raw_receive_reset
 *   inet_sk_error_report   tp_btf_error_report, raw_error_report
 *   kfree_skb              tp_btf_drop (skb, location: before 5.17),
 *                          tp_btf_drop_reason (and reason: 5.17+),
 *                          tp_btf_drop_rx_sk (and rx_sk: 6.11+); tp_btf only
 */
#include <linux/bpf.h>
#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_tracing.h>

#include "socktrace.h"
#include "common.h"
#include "dests.h"
#include "record.h"
#include "handshake.h"
#include "transitions.h"
#include "backup.h"
#include "packets.h"
#include "drops.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Keep the shared types in BTF so bpf2go emits Go declarations for them. */
const struct event *unused_event __attribute__((unused));
const struct dest_key *unused_dest_key __attribute__((unused));
const struct dest_counters *unused_dest_counters __attribute__((unused));
const struct drop_dest_key *unused_drop_dest_key __attribute__((unused));
const struct drop_other_key *unused_drop_other_key __attribute__((unused));

/* State transitions: the primaries. */

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

/* State transitions: the backups (see backup.h). */

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

/* State transitions through tracefs: no recursion guard, no backup. */

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

/*
 * Packets dropped on this host: one program per form of the tracepoint,
 * since a program may not read past the arguments the kernel passes.
 * Before 5.17 the reason is the location (the freeing function).
 */
SEC("tp_btf/kfree_skb")
int BPF_PROG(tp_btf_drop, struct sk_buff *skb, void *location)
{
	return on_drop(skb, (__u64)location, 0);
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(tp_btf_drop_reason, struct sk_buff *skb, void *location, int reason)
{
	return on_drop(skb, (__u32)reason, 0);
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(tp_btf_drop_rx_sk, struct sk_buff *skb, void *location, int reason, struct sock *rx_sk)
{
	/* rx_sk is often NULL (a netfilter drop, an outgoing packet), but
	 * the verifiers of 6.2 to 6.13 take a tracepoint's pointer argument
	 * for non-NULL and drop a test of it (so the fallback to skb->sk
	 * would go): read it as a number. */
	__u64 rx = 0;

	bpf_probe_read_kernel(&rx, sizeof(rx), &ctx[3]);
	return on_drop(skb, (__u32)reason, (struct sock *)rx);
}
