/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The record of the socket owners iterator, shared with Go by bpf2go
 * (ownersOwnerRec): one open file of a process that is a TCP socket. */
#ifndef SOCKTRACE_OWNERS_H
#define SOCKTRACE_OWNERS_H

struct owner_rec {
	__u32 ino; /* the socket's inode: sock_diag's, /proc/PID/fd's socket:[ino] */
	__u32 pid; /* the process (thread group) */
	__u32 fd;
	char comm[16];
};

#endif
