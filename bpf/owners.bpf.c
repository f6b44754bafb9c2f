// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Who holds each TCP socket, as ss -p finds it by reading every
 * /proc/PID/fd link, but from inside the kernel: an iter/task_file
 * program (5.8+) walks every open file of every process in the opener's
 * PID namespace and writes one record for each socket
 * (bpf_sock_from_file, 5.11+), as /proc/PID/fd lists them; user space
 * keeps those of the sockets it lists. It falls back to /proc where the
 * kernel cannot load the program.
 */
#include <linux/bpf.h>
#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#include "owners.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const struct owner_rec *unused_owner_rec __attribute__((unused));

SEC("iter/task_file")
int socket_owners(struct bpf_iter__task_file *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	struct owner_rec r = {};

	if (!task || !file)
		return 0;
	/* Threads share their process's files: list each file once, under
	 * the process, as ss does. */
	if (task->pid != task->tgid)
		return 0;
	struct socket *sock = bpf_sock_from_file(file);
	if (!sock)
		return 0;
	r.ino = BPF_CORE_READ(file, f_inode, i_ino);
	r.pid = task->tgid;
	r.fd = ctx->fd;
	BPF_CORE_READ_STR_INTO(&r.comm, task, comm);
	bpf_seq_write(seq, &r, sizeof(r));
	return 0;
}
