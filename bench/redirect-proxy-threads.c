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
	int fd[2];			/* downstream, upstream */
	atomic_int done;		/* directions finished */
};

struct copy {
	struct pair *p;
	int from;			/* index of the source in p->fd */
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
	*c = (struct copy){ .p = p, .from = from };
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
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(l->upstream),
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		up = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (up < 0 || connect(up, (struct sockaddr *)&a, sizeof(a))) {
			fprintf(stderr, "redirect-proxy-threads: connect to 127.0.0.1:%d: %s\n", l->upstream, strerror(errno));
			if (up >= 0)
				close(up);
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
	struct listener ls[MAX_LISTENERS];
	pthread_t t;
	int opt, n = 0;

	while ((opt = getopt(argc, argv, "B:")) != -1) {
		switch (opt) {
		case 'B': buf_size = strtoul(optarg, NULL, 10); break;
		default: goto usage;
		}
	}
	if (optind == argc || argc - optind > MAX_LISTENERS || buf_size < 1)
		goto usage;
	signal(SIGPIPE, SIG_IGN);
	for (int i = optind; i < argc; i++, n++) {
		char tail;

		if (sscanf(argv[i], "%d:%d%c", &opt, &ls[n].upstream, &tail) != 2 || opt <= 0 || ls[n].upstream <= 0)
			goto usage;
		ls[n].fd = listen_loopback(opt, SOCK_CLOEXEC, 1024);
	}
	for (int i = 0; i < n; i++)
		if (pthread_create(&t, NULL, accept_loop, &ls[i]))
			die("pthread_create");
	printf("ready\n");
	fflush(stdout);
	pause();
	return 0;
usage:
	fprintf(stderr, "usage: redirect-proxy-threads [-B BUFFER] LISTEN_PORT:UPSTREAM_PORT...\n");
	return 2;
}
