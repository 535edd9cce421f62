// SPDX-License-Identifier: Apache-2.0
/* A thread-per-connection TCP forwarder for bench/redirect.sh, beside the
 * epoll one (redirect-proxy.c): for each connection accepted on a listening
 * port it opens one connection to that port's upstream and starts two
 * threads, each copying one direction with blocking reads and writes until
 * its source ends (then it half-closes the destination); the second thread
 * to finish closes both. Everything on 127.0.0.1, with TCP_NODELAY.
 *
 *   redirect-proxy-threads [-B BUFFER] LISTEN_PORT:UPSTREAM_PORT...
 *
 * BUFFER is each direction's read size (256 KiB by default). Runs until
 * killed; prints "ready" on stdout once every port listens. */
#include "net.h"
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

#define MAX_LISTENERS 16

static size_t buf_size = 256 * 1024;

struct pair {
	int fd[2];	 /* downstream, upstream */
	atomic_int done; /* directions finished */
};

struct copy {
	struct pair *p;
	int from; /* index of the source in p->fd */
};

static void *copy_one(void *arg)
{
	struct copy *c = arg;
	struct pair *p = c->p;
	int src = p->fd[c->from], dst = p->fd[!c->from];
	char *buf = malloc(buf_size);
	ssize_t n;

	while (buf && (n = read(src, buf, buf_size)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			/* a blocking read of a socket in a sockhash can return
			 * EAGAIN when woken without data (tcp_bpf_recvmsg, see
			 * the README's redirect limits): say so, and read again */
			fprintf(stderr, "redirect-proxy-threads: read: EAGAIN from a blocking socket\n");
			continue;
		}
		if (n < 0 || !full(dst, buf, n, 1))
			break;
	}
	shutdown(dst, SHUT_WR);
	free(buf);
	free(c);
	if (atomic_fetch_add(&p->done, 1) == 1) {
		close(p->fd[0]);
		close(p->fd[1]);
		free(p);
	}
	return NULL;
}

static void start_copy(struct pair *p, int from)
{
	struct copy *c = malloc(sizeof(*c));
	pthread_t t;

	if (!c)
		die("malloc");
	*c = (struct copy){.p = p, .from = from};
	if (pthread_create(&t, NULL, copy_one, c))
		die("pthread_create");
	pthread_detach(t);
}

struct listener {
	int fd, upstream;
};

static void *accept_loop(void *arg)
{
	struct listener *l = arg;
	int one = 1;

	for (;;) {
		int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC), up;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE)
				continue;
			die("accept");
		}
		up = connect_loopback(l->upstream);
		if (up < 0) {
			fprintf(stderr, "redirect-proxy-threads: connect to 127.0.0.1:%d: %s\n", l->upstream,
				strerror(errno));
			close(fd);
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		setsockopt(up, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		struct pair *p = calloc(1, sizeof(*p));
		if (!p)
			die("malloc");
		p->fd[0] = fd;
		p->fd[1] = up;
		start_copy(p, 0);
		start_copy(p, 1);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int lport[MAX_LISTENERS], uport[MAX_LISTENERS],
		n = proxy_args(argc, argv, &buf_size, lport, uport, MAX_LISTENERS);
	struct listener ls[MAX_LISTENERS];
	pthread_t t;

	signal(SIGPIPE, SIG_IGN);
	for (int i = 0; i < n; i++) {
		ls[i] = (struct listener){.fd = listen_loopback(lport[i], SOCK_CLOEXEC, 1024), .upstream = uport[i]};
		if (pthread_create(&t, NULL, accept_loop, &ls[i]))
			die("pthread_create");
	}
	printf("ready\n");
	fflush(stdout);
	pause();
	return 0;
}
