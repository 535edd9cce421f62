// SPDX-License-Identifier: Apache-2.0
/* A sidecar-like TCP proxy for the sidecar tests, listening on every
 * address (a REDIRECT may send it connections for the namespace's own), in
 * one of these shapes:
 *   loop:    one thread accepts, reads the request to its end (the client's
 *            FIN), waits DELAY ms, connects upstream, forwards it, copies the
 *            answer back, closes both; then the next connection (an event
 *            loop's accept, read and connect, all on one thread);
 *   threads: the main thread accepts; a new thread per connection does the
 *            rest (accept on one thread, connect on another);
 *   reuse:   as loop, but one upstream connection, made for the first
 *            request, carries every request (the upstream echoes it back);
 *   connect-first: the main thread accepts; a new thread per connection
 *            waits DELAY ms, connects upstream, and only then reads the
 *            request (a proxy that opens its upstream connection before it
 *            has touched the inbound one);
 *   pool:    as connect-first, but the connections go to four threads
 *            started beforehand, through a pipe (nothing the kernel sees
 *            ties a connection to the thread that serves it).
 *
 * With -o, the accepting thread asks each connection's original
 * destination (getsockopt SO_ORIGINAL_DST, as Envoy's original_dst
 * listener filter does) and the connection goes to that port on loopback.
 *
 *   sidecar-proxy -u UPSTREAM_PORT [-m loop|threads|reuse|connect-first|pool] [-d DELAY_MS] [-o]
 *
 * Listens on an ephemeral port and prints "ready PORT"; runs until killed. */
#include "net.h"		  /* bench/net.h: die, full, listen_loopback */
#include <linux/netfilter_ipv4.h> /* SO_ORIGINAL_DST */
#include <pthread.h>
#include <signal.h>

#define MAX_REQUEST (1 << 20)

static int upstream_port, delay_ms, reuse, connect_first, pool, original_dst;
/* -o: each inbound descriptor's original destination port */
static unsigned short original_port[65536];
static int reuse_fd = -1; /* reuse: the one upstream connection, once made */

/* reads until the peer's FIN (or len bytes); returns the count */
static ssize_t read_to_end(int fd, char *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = read(fd, buf + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		done += n;
	}
	return done;
}

static int connect_upstream(int down)
{
	int port = original_dst ? original_port[down] : upstream_port;
	struct sockaddr_in a = {
		.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)))
		die("connect upstream");
	return fd;
}

/* one inbound connection, start to end */
static void serve(int down)
{
	char *req = malloc(MAX_REQUEST), *ans = malloc(MAX_REQUEST);
	ssize_t n, m;
	int up = -1;

	if (connect_first) {
		usleep(delay_ms * 1000);
		up = connect_upstream(down);
	}
	n = read_to_end(down, req, MAX_REQUEST);
	if (!connect_first)
		usleep(delay_ms * 1000);
	if (reuse) {
		if (reuse_fd < 0)
			reuse_fd = connect_upstream(down);
		/* the upstream echoes: the answer is as long as the request */
		if (!full(reuse_fd, req, n, 1) || !full(reuse_fd, ans, n, 0))
			die("reused upstream");
		m = n;
	} else {
		if (up < 0)
			up = connect_upstream(down);
		if (!full(up, req, n, 1) || shutdown(up, SHUT_WR))
			die("forward");
		m = read_to_end(up, ans, MAX_REQUEST);
		close(up);
	}
	full(down, ans, m, 1);
	close(down);
	free(req);
	free(ans);
}

static void *worker(void *arg)
{
	serve((int)(long)arg);
	return NULL;
}

static int pool_pipe[2];

/* pool: serves the connections the main thread passes on */
static void *pool_worker(void *arg)
{
	int fd;

	(void)arg;
	while (read(pool_pipe[0], &fd, sizeof(fd)) == sizeof(fd))
		serve(fd);
	return NULL;
}

int main(int argc, char **argv)
{
	const char *mode = "loop";
	struct sockaddr_in a;
	socklen_t alen = sizeof(a);
	int opt, lfd;
	pthread_t t;

	while ((opt = getopt(argc, argv, "u:m:d:o")) != -1) {
		switch (opt) {
		case 'u':
			upstream_port = atoi(optarg);
			break;
		case 'm':
			mode = optarg;
			break;
		case 'd':
			delay_ms = atoi(optarg);
			break;
		case 'o':
			original_dst = 1;
			break;
		default:
			fprintf(stderr,
				"usage: sidecar-proxy -u UPSTREAM_PORT [-m loop|threads|reuse|connect-first|pool] "
				"[-d DELAY_MS] [-o]\n");
			return 2;
		}
	}
	if (!upstream_port || (strcmp(mode, "loop") && strcmp(mode, "threads") && strcmp(mode, "reuse") &&
			       strcmp(mode, "connect-first") && strcmp(mode, "pool")))
		return fprintf(stderr, "sidecar-proxy: bad arguments\n"), 2;
	reuse = !strcmp(mode, "reuse");
	pool = !strcmp(mode, "pool");
	connect_first = !strcmp(mode, "connect-first") || pool;
	if (pool) {
		if (pipe(pool_pipe))
			die("pipe");
		for (int i = 0; i < 4; i++) {
			if (pthread_create(&t, NULL, pool_worker, NULL))
				die("pthread_create");
			pthread_detach(t);
		}
	}
	signal(SIGPIPE, SIG_IGN);
	lfd = listen_on((struct in_addr){htonl(INADDR_ANY)}, 0, 0, 128);
	if (getsockname(lfd, (struct sockaddr *)&a, &alen))
		die("getsockname");
	printf("ready %d\n", ntohs(a.sin_port));
	fflush(stdout);
	for (;;) {
		int fd = accept(lfd, NULL, NULL);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			die("accept");
		}
		if (original_dst) {
			struct sockaddr_in o;
			socklen_t olen = sizeof(o);

			if (fd >= 65536 || getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &o, &olen))
				die("SO_ORIGINAL_DST");
			original_port[fd] = ntohs(o.sin_port);
		}
		if (pool) {
			if (write(pool_pipe[1], &fd, sizeof(fd)) != sizeof(fd))
				die("pass on");
		} else if (!strcmp(mode, "threads") || connect_first) {
			if (pthread_create(&t, NULL, worker, (void *)(long)fd))
				die("pthread_create");
			pthread_detach(t);
		} else {
			serve(fd);
		}
	}
}
