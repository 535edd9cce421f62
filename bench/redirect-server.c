// SPDX-License-Identifier: Apache-2.0
/* The server side of bench/redirect.sh, on 127.0.0.1 (or -a ADDR, as
 * bench/netstack.sh uses it across a veth pair): an echo port that
 * answers each fixed-size request with a reply of the same size, and a
 * source port that streams large writes to whoever connects until they
 * close. One blocking thread per connection; TCP_NODELAY on every socket,
 * as request/response servers and proxies set it.
 *
 *   redirect-server [-a ADDR] [-e ECHO_PORT] [-b BYTES] [-s SOURCE_PORT] [-W WRITE_SIZE]
 *
 * Runs until killed; prints "ready" on stdout once both ports listen. */
#include "net.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int req_bytes = 1024, write_size = 256 * 1024;

static void *echo(void *arg)
{
	int fd = (int)(long)arg;
	char *buf = malloc(req_bytes);

	while (buf && full(fd, buf, req_bytes, 0) && full(fd, buf, req_bytes, 1))
		;
	close(fd);
	free(buf);
	return NULL;
}

static void *source(void *arg)
{
	int fd = (int)(long)arg;
	char *buf = calloc(1, write_size);

	while (buf && full(fd, buf, write_size, 1))
		;
	close(fd);
	free(buf);
	return NULL;
}

struct listener {
	int fd;
	void *(*serve)(void *);
};

static void *accept_loop(void *arg)
{
	struct listener *l = arg;
	int one = 1;
	pthread_t t;

	for (;;) {
		int fd = accept(l->fd, NULL, NULL);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE)
				continue;
			die("accept");
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (pthread_create(&t, NULL, l->serve, (void *)(long)fd))
			close(fd);
		else
			pthread_detach(t);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int echo_port = 0, source_port = 0, opt;
	struct in_addr addr = {htonl(INADDR_LOOPBACK)};
	static struct listener ls[2];
	pthread_t t;

	while ((opt = getopt(argc, argv, "a:e:b:s:W:")) != -1) {
		switch (opt) {
		case 'a':
			addr = ipv4_arg(optarg);
			break;
		case 'e':
			echo_port = atoi(optarg);
			break;
		case 'b':
			req_bytes = atoi(optarg);
			break;
		case 's':
			source_port = atoi(optarg);
			break;
		case 'W':
			write_size = atoi(optarg);
			break;
		default:
			fprintf(stderr, "usage: redirect-server [-a ADDR] [-e ECHO_PORT] [-b BYTES] [-s SOURCE_PORT] "
					"[-W WRITE_SIZE]\n");
			return 2;
		}
	}
	if ((!echo_port && !source_port) || req_bytes < 1 || write_size < 1)
		return fprintf(stderr, "redirect-server: bad arguments\n"), 2;
	signal(SIGPIPE, SIG_IGN);

	if (echo_port)
		ls[0] = (struct listener){listen_on(addr, echo_port, 0, 1024), echo};
	if (source_port)
		ls[1] = (struct listener){listen_on(addr, source_port, 0, 1024), source};
	for (int i = 0; i < 2; i++)
		if (ls[i].serve && pthread_create(&t, NULL, accept_loop, &ls[i]))
			die("pthread_create");
	printf("ready\n");
	fflush(stdout);
	for (;;)
		pause();
}
