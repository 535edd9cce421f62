// SPDX-License-Identifier: Apache-2.0
/* A sidecar-like TCP proxy for the sidecar tests, on 127.0.0.1, in one of
 * three shapes:
 *   loop:    one thread accepts, reads the request to its end (the client's
 *            FIN), waits DELAY ms, connects upstream, forwards it, copies the
 *            answer back, closes both; then the next connection (an event
 *            loop's accept, read and connect, all on one thread);
 *   threads: the main thread accepts; a new thread per connection does the
 *            rest (accept on one thread, connect on another);
 *   reuse:   as loop, but one upstream connection, made for the first
 *            request, carries every request (the upstream echoes it back).
 *
 *   sidecar-proxy -u UPSTREAM_PORT [-m loop|threads|reuse] [-d DELAY_MS]
 *
 * Listens on an ephemeral port and prints "ready PORT"; runs until killed. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_REQUEST (1 << 20)

static int upstream_port, delay_ms, reuse;
static int reuse_fd = -1; /* reuse: the one upstream connection, once made */

static void die(const char *what)
{
	fprintf(stderr, "sidecar-proxy: %s: %s\n", what, strerror(errno));
	exit(1);
}

static struct sockaddr_in loopback(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

	return a;
}

/* reads until the peer's FIN, or len bytes if exact; returns the count */
static ssize_t read_all(int fd, char *buf, size_t len, int exact)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = read(fd, buf + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return exact ? -1 : (ssize_t)done;
		done += n;
	}
	return done;
}

static int write_all(int fd, const char *buf, size_t len)
{
	for (size_t done = 0; done < len;) {
		ssize_t n = send(fd, buf + done, len - done, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		done += n;
	}
	return 0;
}

static int connect_upstream(void)
{
	struct sockaddr_in a = loopback(upstream_port);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)))
		die("connect upstream");
	return fd;
}

/* one inbound connection, start to end */
static void serve(int down)
{
	char *req = malloc(MAX_REQUEST), *ans = malloc(MAX_REQUEST);
	ssize_t n = read_all(down, req, MAX_REQUEST, 0), m;
	int up;

	usleep(delay_ms * 1000);
	if (reuse) {
		if (reuse_fd < 0)
			reuse_fd = connect_upstream();
		/* the upstream echoes: the answer is as long as the request */
		if (write_all(reuse_fd, req, n) || read_all(reuse_fd, ans, n, 1) != n)
			die("reused upstream");
		m = n;
	} else {
		up = connect_upstream();
		if (write_all(up, req, n) || shutdown(up, SHUT_WR))
			die("forward");
		m = read_all(up, ans, MAX_REQUEST, 0);
		close(up);
	}
	write_all(down, ans, m);
	close(down);
	free(req);
	free(ans);
}

static void *worker(void *arg)
{
	serve((int)(long)arg);
	return NULL;
}

int main(int argc, char **argv)
{
	const char *mode = "loop";
	struct sockaddr_in a = loopback(0);
	socklen_t alen = sizeof(a);
	int opt, lfd;
	pthread_t t;

	while ((opt = getopt(argc, argv, "u:m:d:")) != -1) {
		switch (opt) {
		case 'u': upstream_port = atoi(optarg); break;
		case 'm': mode = optarg; break;
		case 'd': delay_ms = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: sidecar-proxy -u UPSTREAM_PORT [-m loop|threads|reuse] [-d DELAY_MS]\n");
			return 2;
		}
	}
	if (!upstream_port || (strcmp(mode, "loop") && strcmp(mode, "threads") && strcmp(mode, "reuse")))
		return fprintf(stderr, "sidecar-proxy: bad arguments\n"), 2;
	reuse = !strcmp(mode, "reuse");
	signal(SIGPIPE, SIG_IGN);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 128) ||
	    getsockname(lfd, (struct sockaddr *)&a, &alen))
		die("listen");
	printf("ready %d\n", ntohs(a.sin_port));
	fflush(stdout);
	for (;;) {
		int fd = accept(lfd, NULL, NULL);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			die("accept");
		}
		if (!strcmp(mode, "threads")) {
			if (pthread_create(&t, NULL, worker, (void *)(long)fd))
				die("pthread_create");
			pthread_detach(t);
		} else {
			serve(fd);
		}
	}
}
