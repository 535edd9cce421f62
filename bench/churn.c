// SPDX-License-Identifier: Apache-2.0
/* Loopback TCP connection churn: client threads connect, send a request,
 * receive an equal reply and close, as fast as they can for a fixed time;
 * server threads accept and answer. Written in C so that the kernel's TCP
 * path, where the probes run, is nearly all of the cost.
 *
 *   churn [-t SECONDS] [-w WARMUP] [-c CLIENTS] [-p PORT] [-n PORTS] [-b BYTES]
 *   churn -i MILLISECONDS [-c ...]
 *
 * Prints one line when done:
 *   connections=N seconds=S rate=R errors=E cpu_seconds=C per_cpu_second=P
 * cpu_seconds is this process's user+system time over the measured window
 * (softirq work done in its context included), so per_cpu_second changes less
 * than rate when other tenants steal the CPU.
 *
 * With -i it runs until killed and prints a sample every interval instead:
 *   sample UNIX_SECONDS CONNECTIONS CPU_SECONDS  (totals so far)
 * so that another process can turn tracing on and off while one unbroken
 * workload runs, and rate each period from the samples around it. */
#include "net.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 256

static int nbytes = 1024;
static atomic_int stop;
static atomic_ulong completed, errors;

static double now(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_seconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void *serve(void *arg)
{
	int lfd = (int)(long)arg;
	char *buf = malloc(nbytes), sink[64];

	for (;;) {
		int fd = accept(lfd, NULL, NULL);

		if (fd < 0)
			continue;
		/* answer, then wait for the client to close first: the TIME_WAIT
		 * socket stays on the client side, as with most clients */
		if (full(fd, buf, nbytes, 0) && full(fd, buf, nbytes, 1))
			while (read(fd, sink, sizeof(sink)) > 0)
				;
		close(fd);
	}
	return NULL;
}

struct client {
	struct sockaddr_in to;
};

static void *connect_loop(void *arg)
{
	struct client *c = arg;
	char *buf = calloc(1, nbytes);

	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		int ok = fd >= 0 && connect(fd, (struct sockaddr *)&c->to, sizeof(c->to)) == 0 &&
			 full(fd, buf, nbytes, 1) && full(fd, buf, nbytes, 0);

		if (fd >= 0)
			close(fd);
		if (ok)
			atomic_fetch_add_explicit(&completed, 1, memory_order_relaxed);
		else {
			atomic_fetch_add_explicit(&errors, 1, memory_order_relaxed);
			usleep(1000); /* e.g. no free local port: back off, do not spin */
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	double seconds = 5, warmup = 0.5, interval_ms = 0;
	int clients = 4, port = 18000, nports = 4, opt;
	static struct client cl[MAX_THREADS];
	pthread_t t;

	while ((opt = getopt(argc, argv, "t:w:c:p:n:b:i:")) != -1) {
		switch (opt) {
		case 'i':
			interval_ms = atof(optarg);
			break;
		case 't':
			seconds = atof(optarg);
			break;
		case 'w':
			warmup = atof(optarg);
			break;
		case 'c':
			clients = atoi(optarg);
			break;
		case 'p':
			port = atoi(optarg);
			break;
		case 'n':
			nports = atoi(optarg);
			break;
		case 'b':
			nbytes = atoi(optarg);
			break;
		default:
			fprintf(stderr, "usage: churn [-t SECONDS] [-w WARMUP] [-i MILLISECONDS] [-c CLIENTS] [-p "
					"PORT] [-n PORTS] [-b BYTES]\n");
			return 2;
		}
	}
	if (clients < 1 || clients > MAX_THREADS || nports < 1 || nbytes < 1 || seconds <= 0)
		return fprintf(stderr, "churn: bad arguments\n"), 2;

	/* several server ports multiply the 4-tuples clients can use while
	 * their earlier connections sit in TIME_WAIT */
	for (int p = 0; p < nports; p++) {
		int lfd = listen_loopback(port + p, 0, 4096);

		for (int i = p; i < clients; i += nports)
			if (pthread_create(&t, NULL, serve, (void *)(long)lfd))
				die("pthread_create");
		if (nports > clients && pthread_create(&t, NULL, serve, (void *)(long)lfd))
			die("pthread_create");
	}
	for (int i = 0; i < clients; i++) {
		cl[i].to = (struct sockaddr_in){.sin_family = AF_INET,
						.sin_port = htons(port + i % nports),
						.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		if (pthread_create(&t, NULL, connect_loop, &cl[i]))
			die("pthread_create");
	}

	if (interval_ms > 0) {
		for (;;) {
			printf("sample %.6f %lu %.6f\n", now(CLOCK_REALTIME), atomic_load(&completed), cpu_seconds());
			fflush(stdout);
			usleep(interval_ms * 1e3);
		}
	}

	usleep(warmup * 1e6);
	unsigned long n0 = atomic_load(&completed), e0 = atomic_load(&errors);
	double t0 = now(CLOCK_MONOTONIC), c0 = cpu_seconds();
	usleep(seconds * 1e6);
	unsigned long n1 = atomic_load(&completed), e1 = atomic_load(&errors);
	double t1 = now(CLOCK_MONOTONIC), c1 = cpu_seconds();
	atomic_store(&stop, 1);

	double cpu = c1 - c0;
	printf("connections=%lu seconds=%.3f rate=%.1f errors=%lu cpu_seconds=%.3f per_cpu_second=%.1f\n", n1 - n0,
	       t1 - t0, (n1 - n0) / (t1 - t0), e1 - e0, cpu, cpu > 0 ? (n1 - n0) / cpu : 0);
	fflush(stdout);
	_exit(0); /* threads may be blocked in the kernel: do not wait for them */
}
