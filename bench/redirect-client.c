// SPDX-License-Identifier: Apache-2.0
/* The client side of bench/redirect.sh, to 127.0.0.1:PORT (or -a ADDR, as
 * bench/netstack.sh uses it across a veth pair), one thread per persistent
 * connection. All connections are open before the warm-up starts, and none
 * is opened or closed inside the measured window.
 *
 *   redirect-client rr   [-a ADDR] -p PORT [-c CONNS] [-b BYTES] [-t SECONDS] [-w WARMUP] [-m KIB]
 *   redirect-client bulk [-a ADDR] -p PORT [-c CONNS] [-r READ_SIZE] [-t SECONDS] [-w WARMUP] [-m KIB]
 *
 * rr: each connection writes a BYTES request and reads the BYTES reply, again
 * and again; each round trip is timed with CLOCK_MONOTONIC and kept in memory.
 * Prints one line:
 *   mode=rr conns=C bytes=B seconds=S requests=N rps=R mean_us=.. p50_us=..
 *   p90_us=.. p99_us=.. p999_us=.. max_us=.. tcp_mem_peak_kb=K cut=0|1 errors=E
 * bulk: each connection reads what the server streams, as fast as it can.
 * Prints one line:
 *   mode=bulk conns=C read_size=R seconds=S bytes=N mbps=M tcp_mem_peak_kb=K cut=0|1 errors=E
 * (mbps: 10^6 bytes a second). Requests and bytes count what completed
 * inside the window. tcp_mem_peak_kb is the most memory all TCP sockets of
 * the host held at once (/proc/net/sockstat, sampled every 50 ms in the
 * window): what queues between sender and reader. With -m, the window ends
 * early (cut=1, seconds says how long it was) once that passes KIB, so that
 * a queue without bounds cannot push the host's TCP into memory pressure.
 * Exits 1 if a connection failed. */
#include "net.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 1024

enum phase { CONNECTING, WARMUP, MEASURING, STOPPED };

static _Atomic int phase = CONNECTING;
static atomic_int connected, errors;
static int nbytes = 1024, read_size = 256 * 1024, port;
static struct in_addr addr; /* 127.0.0.1 unless -a */

struct worker {
	int fd;
	/* rr: round-trip times in ns of the requests that completed while
	 * measuring; bulk: bytes read so far */
	uint64_t *samples;
	size_t n, cap;
	_Atomic uint64_t bytes;
	char pad[64];
};

static struct worker workers[MAX_CONNS];

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static int connect_to(int p)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(p), .sin_addr = addr};
	/* a stuck peer ends the run with an error instead of hanging it */
	struct timeval tv = {.tv_sec = 10};
	int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0)
		return -1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		close(fd);
		return -1;
	}
	return fd;
}

static int start(struct worker *w)
{
	w->fd = connect_to(port);
	if (w->fd < 0) {
		fprintf(stderr, "redirect-client: connect to %s:%d: %s\n", inet_ntoa(addr), port, strerror(errno));
		atomic_fetch_add(&errors, 1);
	}
	atomic_fetch_add(&connected, 1);
	while (atomic_load(&phase) == CONNECTING)
		usleep(1000);
	return w->fd >= 0;
}

static void *rr(void *arg)
{
	struct worker *w = arg;
	char *buf = calloc(1, nbytes);

	if (!start(w))
		return NULL;
	for (;;) {
		uint64_t t0 = now_ns();

		if (!full(w->fd, buf, nbytes, 1) || !full(w->fd, buf, nbytes, 0)) {
			if (atomic_load(&phase) != STOPPED) {
				fprintf(stderr, "redirect-client: request: %s\n",
					errno ? strerror(errno) : "connection closed");
				atomic_fetch_add(&errors, 1);
			}
			return NULL;
		}
		uint64_t t1 = now_ns();
		int p = atomic_load_explicit(&phase, memory_order_relaxed);

		if (p == STOPPED)
			return NULL;
		if (p != MEASURING)
			continue;
		if (w->n == w->cap) {
			w->cap = w->cap ? 2 * w->cap : 65536;
			w->samples = realloc(w->samples, w->cap * sizeof(*w->samples));
			if (!w->samples) {
				fprintf(stderr, "redirect-client: out of memory\n");
				exit(1);
			}
		}
		w->samples[w->n++] = t1 - t0;
	}
}

static void *bulk(void *arg)
{
	struct worker *w = arg;
	char *buf = malloc(read_size);

	if (!start(w))
		return NULL;
	for (;;) {
		ssize_t n = read(w->fd, buf, read_size);

		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			if (atomic_load(&phase) != STOPPED) {
				fprintf(stderr, "redirect-client: read: %s\n",
					n ? strerror(errno) : "connection closed");
				atomic_fetch_add(&errors, 1);
			}
			return NULL;
		}
		atomic_fetch_add_explicit(&w->bytes, n, memory_order_relaxed);
	}
}

/* TCP memory of the whole host now, in KiB; -1 if unknown */
static long tcp_mem_kb(void)
{
	FILE *f = fopen("/proc/net/sockstat", "r");
	char line[256];
	long pages = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "TCP:", 4)) {
			char *m = strstr(line, " mem ");

			if (m)
				pages = atol(m + 5);
		}
	fclose(f);
	return pages < 0 ? -1 : pages * (sysconf(_SC_PAGESIZE) / 1024);
}

/* sleeps for the window, keeping the peak of TCP memory; ends it early
 * (*cut) when that passes limit_kb, unless 0 */
static long watch_tcp_mem(double seconds, long limit_kb, int *cut)
{
	uint64_t end = now_ns() + (uint64_t)(seconds * 1e9);
	long peak = tcp_mem_kb();

	*cut = 0;
	for (uint64_t t; (t = now_ns()) < end;) {
		uint64_t left = end - t;

		usleep(left > 50000000 ? 50000 : left / 1000);
		long kb = tcp_mem_kb();
		if (kb > peak)
			peak = kb;
		if (limit_kb && kb > limit_kb) {
			*cut = 1;
			break;
		}
	}
	return peak;
}

static uint64_t total_bytes(int conns)
{
	uint64_t sum = 0;

	for (int i = 0; i < conns; i++)
		sum += atomic_load_explicit(&workers[i].bytes, memory_order_relaxed);
	return sum;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* nearest rank, as bench/lib.sh's percentile() */
static double rank_us(const uint64_t *v, size_t n, double p)
{
	size_t r = (size_t)(p / 100 * n);

	if (r < p / 100 * n)
		r++;
	if (r < 1)
		r = 1;
	return n ? v[r - 1] / 1e3 : 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: redirect-client rr|bulk [-a ADDR] -p PORT [-c CONNS] [-b BYTES] [-r READ_SIZE] [-t "
			"SECONDS] [-w WARMUP] [-m KIB]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	double seconds = 2, warmup = 0.5;
	int conns = 1, opt, is_rr;
	long mem_limit_kb = 0;
	static pthread_t threads[MAX_CONNS];

	if (argc < 2)
		usage();
	is_rr = !strcmp(argv[1], "rr");
	if (!is_rr && strcmp(argv[1], "bulk"))
		usage();
	addr.s_addr = htonl(INADDR_LOOPBACK);
	optind = 2;
	while ((opt = getopt(argc, argv, "a:p:c:b:r:t:w:m:")) != -1) {
		switch (opt) {
		case 'a':
			addr = ipv4_arg(optarg);
			break;
		case 'p':
			port = atoi(optarg);
			break;
		case 'c':
			conns = atoi(optarg);
			break;
		case 'b':
			nbytes = atoi(optarg);
			break;
		case 'r':
			read_size = atoi(optarg);
			break;
		case 't':
			seconds = atof(optarg);
			break;
		case 'w':
			warmup = atof(optarg);
			break;
		case 'm':
			mem_limit_kb = atol(optarg);
			break;
		default:
			usage();
		}
	}
	if (port <= 0 || conns < 1 || conns > MAX_CONNS || nbytes < 1 || read_size < 1 || seconds <= 0 || warmup < 0)
		return fprintf(stderr, "redirect-client: bad arguments\n"), 2;
	signal(SIGPIPE, SIG_IGN);

	for (int i = 0; i < conns; i++)
		if (pthread_create(&threads[i], NULL, is_rr ? rr : bulk, &workers[i])) {
			perror("redirect-client: pthread_create");
			return 1;
		}
	while (atomic_load(&connected) < conns)
		usleep(1000);
	if (atomic_load(&errors))
		return 1;
	atomic_store(&phase, WARMUP);
	usleep(warmup * 1e6);

	uint64_t b0 = total_bytes(conns), t0 = now_ns();
	atomic_store(&phase, MEASURING);
	int cut;
	long mem_peak = watch_tcp_mem(seconds, mem_limit_kb, &cut);
	atomic_store(&phase, STOPPED);
	uint64_t b1 = total_bytes(conns), t1 = now_ns();
	double secs = (t1 - t0) / 1e9;
	int errs = atomic_load(&errors);

	if (!is_rr) {
		printf("mode=bulk conns=%d read_size=%d seconds=%.3f bytes=%llu mbps=%.1f tcp_mem_peak_kb=%ld cut=%d "
		       "errors=%d\n",
		       conns, read_size, secs, (unsigned long long)(b1 - b0), (b1 - b0) / secs / 1e6, mem_peak, cut,
		       errs);
		fflush(stdout);
		_exit(errs ? 1 : 0); /* readers may be blocked in the kernel */
	}

	/* a request in flight when the window closed is not counted: its
	 * thread finishes it, sees STOPPED and ends */
	for (int i = 0; i < conns; i++)
		pthread_join(threads[i], NULL);
	errs = atomic_load(&errors);
	size_t n = 0;
	for (int i = 0; i < conns; i++)
		n += workers[i].n;
	uint64_t *all = malloc((n ? n : 1) * sizeof(*all)), sum = 0;
	size_t k = 0;
	for (int i = 0; i < conns; i++)
		for (size_t j = 0; j < workers[i].n; j++)
			sum += all[k++] = workers[i].samples[j];
	qsort(all, n, sizeof(*all), cmp_u64);
	printf("mode=rr conns=%d bytes=%d seconds=%.3f requests=%zu rps=%.1f mean_us=%.1f p50_us=%.1f p90_us=%.1f "
	       "p99_us=%.1f p999_us=%.1f max_us=%.1f tcp_mem_peak_kb=%ld cut=%d errors=%d\n",
	       conns, nbytes, secs, n, n / secs, n ? sum / 1e3 / n : 0, rank_us(all, n, 50), rank_us(all, n, 90),
	       rank_us(all, n, 99), rank_us(all, n, 99.9), n ? all[n - 1] / 1e3 : 0, mem_peak, cut, errs);
	fflush(stdout);
	_exit(errs || !n ? 1 : 0);
}
