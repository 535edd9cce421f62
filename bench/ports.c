// SPDX-License-Identifier: Apache-2.0
/* Makes one accepted IPv4 connection on each of COUNT listening ports
 * (127.0.0.1:BASE ... BASE+COUNT-1), so an exporter's per-port accept
 * counters grow to COUNT label sets. Every listener exists before the first
 * connect, so the kernel holds COUNT listening ports at once, as a busy host
 * would.
 *
 *   ports [-b BASE] [-n COUNT]
 *
 * Prints "accepted=N" and exits. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static void die(const char *what, int port)
{
	fprintf(stderr, "ports: %s (port %d): %s\n", what, port, strerror(errno));
	exit(1);
}

int main(int argc, char **argv)
{
	int base = 20000, count = 5000, opt, accepted = 0;

	while ((opt = getopt(argc, argv, "b:n:")) != -1) {
		if (opt == 'b')
			base = atoi(optarg);
		else if (opt == 'n')
			count = atoi(optarg);
		else
			return fprintf(stderr, "usage: ports [-b BASE] [-n COUNT]\n"), 2;
	}
	if (count < 1 || base < 1 || base + count > 65536)
		return fprintf(stderr, "ports: bad range\n"), 2;

	/* one descriptor per listener plus a connection at a time */
	struct rlimit rl = {.rlim_cur = count + 64, .rlim_max = count + 64};
	if (setrlimit(RLIMIT_NOFILE, &rl))
		die("setrlimit", 0);

	int *lfd = calloc(count, sizeof(int));
	for (int i = 0; i < count; i++) {
		struct sockaddr_in a = {
			.sin_family = AF_INET, .sin_port = htons(base + i), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		int one = 1;

		lfd[i] = socket(AF_INET, SOCK_STREAM, 0);
		if (lfd[i] < 0)
			die("socket", base + i);
		setsockopt(lfd[i], SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(lfd[i], (struct sockaddr *)&a, sizeof(a)) || listen(lfd[i], 8))
			die("bind/listen", base + i);
	}
	for (int i = 0; i < count; i++) {
		struct sockaddr_in a = {
			.sin_family = AF_INET, .sin_port = htons(base + i), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		int c = socket(AF_INET, SOCK_STREAM, 0), s;

		if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof(a)))
			die("connect", base + i);
		s = accept(lfd[i], NULL, NULL);
		if (s < 0)
			die("accept", base + i);
		accepted++;
		close(c);
		close(s);
	}
	printf("accepted=%d\n", accepted);
	return 0;
}
