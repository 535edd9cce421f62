// SPDX-License-Identifier: Apache-2.0
/* What the benchmark's C helpers share: a fatal error, whole reads and
 * writes, an address argument, a listener (on 127.0.0.1 by default), a
 * connection to a loopback port, and the forwarders' command line.
 * Header-only: each helper is one translation unit, built by one clang
 * command. */
#ifndef BENCH_NET_H
#define BENCH_NET_H

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* "PROGRAM: WHAT: errno's message" on stderr, then exit status 1 */
static inline void die(const char *what)
{
	fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name, what, strerror(errno));
	exit(1);
}

/* Moves this process into a cgroup v2 directory ("0": the writer). */
static inline void join_cgroup(const char *dir)
{
	char path[4096];
	int fd;

	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, "0", 1) != 1)
		die(path);
	close(fd);
}

/* read or write exactly len bytes; false on error or end of stream (a write
 * to a closed peer fails with EPIPE instead of raising SIGPIPE) */
static inline int full(int fd, char *buf, size_t len, int writing)
{
	for (size_t done = 0; done < len;) {
		ssize_t n = writing ? send(fd, buf + done, len - done, MSG_NOSIGNAL) : read(fd, buf + done, len - done);
		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			return 0;
		}
		done += n;
	}
	return 1;
}

/* an IPv4 address given on the command line (-a ADDR); a usage error,
 * exit status 2, if it is none */
static inline struct in_addr ipv4_arg(const char *text)
{
	struct in_addr a;

	if (inet_pton(AF_INET, text, &a) != 1) {
		fprintf(stderr, "%s: %s is not an IPv4 address\n", program_invocation_short_name, text);
		exit(2);
	}
	return a;
}

/* a listening TCP socket on addr:port; type_flags (SOCK_NONBLOCK,
 * SOCK_CLOEXEC) are or-ed into SOCK_STREAM */
static inline int listen_on(struct in_addr addr, int port, int type_flags, int backlog)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr = addr};
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | type_flags, 0);

	if (fd < 0)
		die("socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, backlog))
		die("bind/listen");
	return fd;
}

/* the same on 127.0.0.1 */
static inline int listen_loopback(int port, int type_flags, int backlog)
{
	return listen_on((struct in_addr){htonl(INADDR_LOOPBACK)}, port, type_flags, backlog);
}

/* a blocking connection to 127.0.0.1:port (on loopback it completes at
 * once); -1 with errno set if it fails */
static inline int connect_loopback(int port)
{
	struct sockaddr_in a = {
		.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), e;

	if (fd < 0 || !connect(fd, (struct sockaddr *)&a, sizeof(a)))
		return fd;
	e = errno;
	close(fd);
	errno = e;
	return -1;
}

/* A forwarder's command line: [-B BUFFER] LISTEN_PORT:UPSTREAM_PORT...;
 * sets *buf_size and at most max port pairs, returns how many, or exits
 * with status 2 and the usage line. */
static inline int proxy_args(int argc, char **argv, size_t *buf_size, int listen[], int upstream[], int max)
{
	int opt, n = 0;

	while ((opt = getopt(argc, argv, "B:")) != -1) {
		if (opt != 'B')
			goto usage;
		*buf_size = strtoul(optarg, NULL, 10);
	}
	if (optind == argc || argc - optind > max || *buf_size < 1)
		goto usage;
	for (int i = optind; i < argc; i++, n++) {
		char tail;

		if (sscanf(argv[i], "%d:%d%c", &listen[n], &upstream[n], &tail) != 2 || listen[n] <= 0 ||
		    upstream[n] <= 0)
			goto usage;
	}
	return n;
usage:
	fprintf(stderr, "usage: %s [-B BUFFER] LISTEN_PORT:UPSTREAM_PORT...\n", program_invocation_short_name);
	exit(2);
}

#endif
