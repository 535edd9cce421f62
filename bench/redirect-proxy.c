// SPDX-License-Identifier: Apache-2.0
/* A sidecar-like TCP forwarder for bench/redirect.sh: one thread, epoll,
 * level-triggered. For each connection accepted on a listening port it opens
 * one connection to that port's upstream, and copies bytes both ways until
 * either side closes, then closes both. Everything on 127.0.0.1, with
 * TCP_NODELAY, as service-mesh proxies run.
 *
 *   redirect-proxy [-B BUFFER] LISTEN_PORT:UPSTREAM_PORT...
 *
 * Each direction of a pair has one BUFFER (256 KiB by default): while the
 * bytes read into it are not all written on, that side is not read (its
 * sender is held back by TCP's own flow control). Runs until killed;
 * prints "ready" on stdout once every port listens. */
#include "net.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_LISTENERS 16
#define MAX_EVENTS    256

struct end {
	int fd;
	int listener; /* a listening socket: upstream is its port */
	int upstream;
	struct end *peer;
	char *buf; /* bytes read from this end, to write to the peer */
	size_t len, off;
	unsigned events; /* the interest registered with epoll */
	int closed;
	struct end *next_closed;
};

static int ep;
static size_t buf_size = 256 * 1024;
static struct end *closed_ends; /* freed after the current batch of events */

static void set_interest(struct end *e)
{
	unsigned want = 0;

	if (e->len == e->off)
		want |= EPOLLIN; /* nothing of ours waits for the peer */
	if (e->peer->len != e->peer->off)
		want |= EPOLLOUT; /* the peer's bytes wait for us */
	if (want == e->events)
		return;
	struct epoll_event ev = {.events = want, .data.ptr = e};
	if (epoll_ctl(ep, EPOLL_CTL_MOD, e->fd, &ev))
		die("epoll_ctl");
	e->events = want;
}

static void close_pair(struct end *e)
{
	struct end *ends[2] = {e, e->peer};

	for (int i = 0; i < 2; i++) {
		if (ends[i]->closed)
			continue;
		close(ends[i]->fd); /* also leaves the epoll set */
		ends[i]->closed = 1;
		ends[i]->next_closed = closed_ends;
		closed_ends = ends[i];
	}
}

/* writes what e holds to its peer; false if the pair was closed */
static int flush(struct end *e)
{
	while (e->off < e->len) {
		ssize_t n = send(e->peer->fd, e->buf + e->off, e->len - e->off, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			close_pair(e);
			return 0;
		}
		e->off += n;
	}
	if (e->off == e->len)
		e->off = e->len = 0;
	set_interest(e);
	set_interest(e->peer);
	return 1;
}

static void readable(struct end *e)
{
	ssize_t n = read(e->fd, e->buf, buf_size);

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		close_pair(e);
		return;
	}
	e->len = n;
	e->off = 0;
	flush(e);
}

static struct end *new_end(int fd)
{
	struct end *e = calloc(1, sizeof(*e));
	int one = 1;

	if (!e || !(e->buf = malloc(buf_size)))
		die("malloc");
	e->fd = fd;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return e;
}

static void add(struct end *e, unsigned events)
{
	struct epoll_event ev = {.events = events, .data.ptr = e};

	if (epoll_ctl(ep, EPOLL_CTL_ADD, e->fd, &ev))
		die("epoll_ctl");
	e->events = events;
}

static void accept_all(struct end *l)
{
	for (;;) {
		int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), up;

		if (fd < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			if (errno == ECONNABORTED || errno == EMFILE || errno == ENFILE)
				continue;
			die("accept");
		}
		/* blocking connect: on loopback it completes at once, and a
		 * connection is only usable once both ends are known */
		up = connect_loopback(l->upstream);
		if (up < 0) {
			fprintf(stderr, "redirect-proxy: connect to 127.0.0.1:%d: %s\n", l->upstream, strerror(errno));
			close(fd);
			continue;
		}
		if (fcntl(up, F_SETFL, O_NONBLOCK))
			die("fcntl");
		struct end *down = new_end(fd), *upe = new_end(up);
		down->peer = upe;
		upe->peer = down;
		add(down, EPOLLIN);
		add(upe, EPOLLIN);
	}
}

int main(int argc, char **argv)
{
	int lport[MAX_LISTENERS], uport[MAX_LISTENERS],
		n = proxy_args(argc, argv, &buf_size, lport, uport, MAX_LISTENERS);
	struct epoll_event events[MAX_EVENTS];

	signal(SIGPIPE, SIG_IGN);
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1");
	for (int i = 0; i < n; i++) {
		struct end *l = calloc(1, sizeof(*l));

		if (!l)
			die("malloc");
		l->fd = listen_loopback(lport[i], SOCK_NONBLOCK | SOCK_CLOEXEC, 1024);
		l->listener = 1;
		l->upstream = uport[i];
		add(l, EPOLLIN);
	}
	printf("ready\n");
	fflush(stdout);

	for (;;) {
		int n = epoll_wait(ep, events, MAX_EVENTS, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}
		for (int i = 0; i < n; i++) {
			struct end *e = events[i].data.ptr;

			if (e->listener) {
				accept_all(e);
				continue;
			}
			/* the peer's pending bytes first: that may free our
			 * own buffer's destination */
			if (!e->closed && (events[i].events & EPOLLOUT))
				flush(e->peer);
			if (e->closed)
				continue;
			if (e->len == e->off && (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
				readable(e); /* reads the end of stream or the error */
			else if (events[i].events & (EPOLLHUP | EPOLLERR))
				close_pair(e); /* with bytes for a peer that can no longer answer */
		}
		while (closed_ends) {
			struct end *e = closed_ends;

			closed_ends = e->next_closed;
			free(e->buf);
			free(e);
		}
	}
}
