// SPDX-License-Identifier: Apache-2.0
/* A writer that writes as fast as it can and a reader that reads slowly or
 * not at all, for measuring how far a sender gets ahead of its receiver (the
 * socket redirect's backpressure). Every byte is hashed at both ends.
 *
 *   slow-peer read  [-a ADDR] [-p PORT] [-n CONNS] [-r BYTES_PER_S] [-g]
 *     listens (prints "ready PORT"), accepts CONNS connections and reads
 *     nothing until a line arrives on stdin (or at once with -g); then reads
 *     all of them, RATE bytes a second in all (0: as fast as it can), each
 *     until its FIN; prints "accepted N" once all are accepted, "got MS
 *     BYTES" (all connections) every 100 ms while reading, and per
 *     connection "read PEER_PORT BYTES SHA256".
 *   slow-peer write [-a ADDR] -p PORT [-n CONNS] -B BYTES [-N] [-H]
 *     CONNS connections, a thread each, each sending BYTES pseudo-random bytes
 *     in 64 KiB send() calls (blocking; -N: non-blocking, waiting in poll()
 *     on EAGAIN), then its FIN; -H holds every connection's last send until
 *     a line arrives on stdin (prints "holding" once all of them wait there);
 *     prints "connected" once all are connected,
 *     "sent MS BYTES" (all connections) every 100 ms, "error PORT ERRNO_NAME"
 *     for a failed call, and per connection "wrote PORT BYTES SHA256", then
 *     "done". Exit status 1 if any call failed.
 * Addresses are IPv4 or IPv6 (default 127.0.0.1); MS is CLOCK_MONOTONIC in
 * milliseconds, the same clock in both processes. */
#include "net.h"
#include <fcntl.h>
#include <netdb.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#define CHUNK	  (64 * 1024)
#define MAX_CONNS 1024

static const char *addr = "127.0.0.1";
static int port, conns = 1, go_now, nonblocking, hold;
static long long rate, bytes;
static _Atomic long long sent_total;
static _Atomic int failed, holding, released;

static long long now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000LL + t.tv_nsec / 1000000;
}

static void hex(const unsigned char *d, char *out)
{
	for (int i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}

static struct addrinfo *resolve(void)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_PASSIVE}, *ai;
	char p[16];

	snprintf(p, sizeof(p), "%d", port);
	if (getaddrinfo(addr, p, &hints, &ai)) {
		fprintf(stderr, "slow-peer: %s is not an IP address\n", addr);
		exit(2);
	}
	return ai;
}

static int local_or_peer_port(int fd, int peer)
{
	struct sockaddr_storage a;
	socklen_t len = sizeof(a);

	if ((peer ? getpeername : getsockname)(fd, (struct sockaddr *)&a, &len))
		die("getsockname");
	return ntohs(a.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&a)->sin6_port
					     : ((struct sockaddr_in *)&a)->sin_port);
}

/* xorshift64: a stream that differs per connection and shows a reordering */
static void fill(uint64_t *state, unsigned char *buf, size_t len)
{
	for (size_t i = 0; i < len; i += 8) {
		uint64_t x = *state;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		*state = x;
		memcpy(buf + i, &x, 8);
	}
}

static void report_error(int fd, const char *what)
{
	int e = errno;

	printf("error %d %s %s\n", local_or_peer_port(fd, 0), what, strerrorname_np(e) ?: "?");
	fflush(stdout);
	failed = 1;
}

static void *write_one(void *arg)
{
	int fd = (int)(long)arg, lport = local_or_peer_port(fd, 0);
	unsigned char *buf = malloc(CHUNK), digest[32];
	char text[65];
	uint64_t state = 0x9e3779b97f4a7c15ULL ^ lport;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	long long done = 0;

	if (!buf || !md)
		die("malloc");
	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	while (done < bytes) {
		size_t len = bytes - done < CHUNK ? bytes - done : CHUNK, off = 0;

		fill(&state, buf, CHUNK);
		EVP_DigestUpdate(md, buf, len);
		if (hold && done + len == bytes) {
			holding++;
			while (!released)
				usleep(1000);
		}
		while (off < len) {
			ssize_t n = send(fd, buf + off, len - off, MSG_NOSIGNAL);

			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && errno == EAGAIN && nonblocking) {
				struct pollfd p = {.fd = fd, .events = POLLOUT};

				poll(&p, 1, -1);
				continue;
			}
			if (n < 0) {
				report_error(fd, "send");
				free(buf);
				return NULL;
			}
			off += n;
			sent_total += n;
		}
		done += len;
	}
	if (shutdown(fd, SHUT_WR))
		report_error(fd, "shutdown");
	EVP_DigestFinal_ex(md, digest, NULL);
	EVP_MD_CTX_free(md);
	free(buf);
	hex(digest, text);
	printf("wrote %d %lld %s\n", lport, done, text);
	fflush(stdout);
	return NULL;
}

static int writer(void)
{
	struct addrinfo *ai = resolve();
	pthread_t threads[MAX_CONNS];
	int fds[MAX_CONNS], running[MAX_CONNS];
	long long last = 0;
	int said_holding = 0;

	for (int i = 0; i < conns; i++) {
		fds[i] = socket(ai->ai_family, SOCK_STREAM, 0);
		if (fds[i] < 0 || connect(fds[i], ai->ai_addr, ai->ai_addrlen))
			die("connect");
		if (nonblocking && fcntl(fds[i], F_SETFL, O_NONBLOCK))
			die("fcntl");
	}
	printf("connected\n");
	fflush(stdout);
	for (int i = 0; i < conns; i++) {
		if (pthread_create(&threads[i], NULL, write_one, (void *)(long)fds[i]))
			die("pthread_create");
		running[i] = 1;
	}
	/* progress until every thread is done */
	for (int left = conns; left > 0;) {
		long long t = now_ms();

		if (t - last >= 100) {
			printf("sent %lld %lld\n", t, (long long)sent_total);
			fflush(stdout);
			last = t;
		}
		if (hold && !said_holding && holding == conns) {
			printf("holding\n");
			fflush(stdout);
			said_holding = 1;
		}
		if (said_holding && !released) {
			struct pollfd in = {.fd = 0, .events = POLLIN};
			char line[16];

			if (poll(&in, 1, 10) == 1 && fgets(line, sizeof(line), stdin))
				released = 1;
		} else {
			usleep(10000);
		}
		left = 0;
		for (int i = 0; i < conns; i++) {
			if (running[i] && pthread_tryjoin_np(threads[i], NULL) == 0)
				running[i] = 0;
			left += running[i];
		}
	}
	printf("sent %lld %lld\ndone\n", now_ms(), (long long)sent_total);
	fflush(stdout);
	return failed ? 1 : 0;
}

struct reading {
	int fd, peer_port, open;
	long long got;
	EVP_MD_CTX *md;
};

static int reader(void)
{
	struct addrinfo *ai = resolve();
	int one = 1, lfd = socket(ai->ai_family, SOCK_STREAM, 0), open = conns;
	static struct reading r[MAX_CONNS];
	static struct pollfd p[MAX_CONNS];
	static unsigned char buf[CHUNK];
	long long start, allowed, taken = 0, last = 0;
	char line[16];

	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, ai->ai_addr, ai->ai_addrlen) || listen(lfd, MAX_CONNS))
		die("bind/listen");
	printf("ready %d\n", local_or_peer_port(lfd, 0));
	fflush(stdout);
	for (int i = 0; i < conns; i++) {
		r[i].fd = accept(lfd, NULL, NULL);
		if (r[i].fd < 0)
			die("accept");
		r[i].peer_port = local_or_peer_port(r[i].fd, 1);
		r[i].open = 1;
		r[i].md = EVP_MD_CTX_new();
		EVP_DigestInit_ex(r[i].md, EVP_sha256(), NULL);
	}
	printf("accepted %d\n", conns);
	fflush(stdout);
	if (!go_now && !fgets(line, sizeof(line), stdin))
		return 1;
	start = now_ms();
	while (open > 0) {
		long long t = now_ms();
		int n = 0;

		if (t - last >= 100) {
			printf("got %lld %lld\n", t, taken);
			fflush(stdout);
			last = t;
		}
		for (int i = 0; i < conns; i++)
			if (r[i].open)
				p[n++] = (struct pollfd){.fd = r[i].fd, .events = POLLIN};
		allowed = rate ? (now_ms() - start + 1) * rate / 1000 - taken : CHUNK;
		if (allowed <= 0) {
			usleep(1000);
			continue;
		}
		if (poll(p, n, 1000) < 0 && errno != EINTR)
			die("poll");
		for (int i = 0, k = 0; i < conns && allowed > 0; i++) {
			ssize_t got;

			if (!r[i].open)
				continue;
			if (!(p[k++].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			got = recv(r[i].fd, buf, allowed < CHUNK ? allowed : CHUNK, MSG_DONTWAIT);
			if (got < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (got < 0) {
				report_error(r[i].fd, "recv");
				got = 0;
			}
			if (got == 0) {
				unsigned char digest[32];
				char text[65];

				EVP_DigestFinal_ex(r[i].md, digest, NULL);
				hex(digest, text);
				printf("read %d %lld %s\n", r[i].peer_port, r[i].got, text);
				fflush(stdout);
				close(r[i].fd);
				r[i].open = 0;
				open--;
				continue;
			}
			EVP_DigestUpdate(r[i].md, buf, got);
			r[i].got += got;
			taken += got;
			if (rate)
				allowed -= got;
		}
	}
	printf("got %lld %lld\n", now_ms(), taken);
	fflush(stdout);
	return failed ? 1 : 0;
}

int main(int argc, char **argv)
{
	int opt;

	if (argc < 2 || (strcmp(argv[1], "read") && strcmp(argv[1], "write")))
		goto usage;
	while ((opt = getopt(argc - 1, argv + 1, "a:p:n:r:B:gNH")) != -1) {
		switch (opt) {
		case 'a':
			addr = optarg;
			break;
		case 'p':
			port = atoi(optarg);
			break;
		case 'n':
			conns = atoi(optarg);
			break;
		case 'r':
			rate = atoll(optarg);
			break;
		case 'B':
			bytes = atoll(optarg);
			break;
		case 'g':
			go_now = 1;
			break;
		case 'N':
			nonblocking = 1;
			break;
		case 'H':
			hold = 1;
			break;
		default:
			goto usage;
		}
	}
	if (conns < 1 || conns > MAX_CONNS)
		goto usage;
	return argv[1][0] == 'r' ? reader() : writer();
usage:
	fprintf(stderr, "usage: slow-peer read [-a ADDR] [-p PORT] [-n CONNS] [-r BYTES_PER_S] [-g]\n"
			"       slow-peer write [-a ADDR] -p PORT [-n CONNS] -B BYTES [-N] [-H]\n");
	return 2;
}
