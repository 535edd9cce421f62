// SPDX-License-Identifier: Apache-2.0
/* The packet-rate workload of bench/netstack.sh: small UDP datagrams, sent
 * as fast as one thread can (sendmmsg, BATCH at a time) to a receiver that
 * reads them (recvmmsg), so that nearly all the time goes to the kernel's
 * per-packet path.
 *
 *   udp-flood send -a ADDR -p PORT [-s BYTES] [-b BATCH] [-t SECONDS]
 *   udp-flood recv [-a ADDR] -p PORT [-b BATCH] [-t SECONDS] [-w WARMUP] [-i IDLE]
 *
 * send: BYTES of payload a datagram (64), for SECONDS (2); prints one line:
 *   sent=N seconds=S pps=R refused=E
 * (refused: batches the kernel refused, ECONNREFUSED or ENOBUFS; the
 * datagrams of those are not counted as sent).
 * recv: binds ADDR:PORT (0.0.0.0), prints "ready"; its window starts WARMUP
 * seconds (0.3) after the first datagram and lasts SECONDS (1); it keeps
 * reading until no datagram came for IDLE seconds (0.1), then prints:
 *   packets=N seconds=S pps=R drops=D total=T total_drops=TD
 * packets and drops are those of the window, total and total_drops those of
 * its whole run; drops are datagrams the kernel dropped for this socket (a
 * full receive buffer; SO_MEMINFO). Exits 1 if the datagrams stopped before
 * the window ended. */
#include "net.h"
#include <linux/sock_diag.h>
#include <stdint.h>
#include <sys/time.h>
#include <time.h>

#define MAX_BATCH 1024

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void usage(void)
{
	fprintf(stderr, "usage: udp-flood send -a ADDR -p PORT [-s BYTES] [-b BATCH] [-t SECONDS]\n"
			"       udp-flood recv [-a ADDR] -p PORT [-b BATCH] [-t SECONDS] [-w WARMUP] [-i IDLE]\n");
	exit(2);
}

/* datagrams the kernel dropped for a socket so far */
static unsigned int socket_drops(int fd)
{
	unsigned int mem[SK_MEMINFO_VARS] = {0};
	socklen_t len = sizeof(mem);

	if (getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mem, &len))
		die("getsockopt SO_MEMINFO");
	return mem[SK_MEMINFO_DROPS];
}

static int flood(struct sockaddr_in *to, int bytes, int batch, double seconds)
{
	static struct mmsghdr msgs[MAX_BATCH];
	struct iovec iov = {.iov_base = calloc(1, bytes), .iov_len = bytes};
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	uint64_t sent = 0, refused = 0;
	double t0, t;

	if (fd < 0 || !iov.iov_base)
		die("socket");
	if (connect(fd, (struct sockaddr *)to, sizeof(*to)))
		die("connect");
	for (int i = 0; i < batch; i++)
		msgs[i].msg_hdr = (struct msghdr){.msg_iov = &iov, .msg_iovlen = 1};
	t0 = now();
	do {
		int n = sendmmsg(fd, msgs, batch, 0);

		if (n > 0)
			sent += n;
		else if (errno == ECONNREFUSED || errno == ENOBUFS)
			refused++; /* no receiver yet or any more; a full queue */
		else if (errno != EINTR)
			die("sendmmsg");
	} while ((t = now()) - t0 < seconds);
	printf("sent=%llu seconds=%.3f pps=%.1f refused=%llu\n", (unsigned long long)sent, t - t0, sent / (t - t0),
	       (unsigned long long)refused);
	return 0;
}

static int drain(struct sockaddr_in *at, int batch, double seconds, double warmup, double idle)
{
	static struct mmsghdr msgs[MAX_BATCH];
	static struct iovec iovs[MAX_BATCH];
	static char bufs[MAX_BATCH][2048];
	/* wakes up now and then to look at the clock while nothing comes */
	struct timeval tv = {.tv_usec = 20000};
	int fd = socket(AF_INET, SOCK_DGRAM, 0), rcvbuf = 4 << 20;
	uint64_t total = 0, c0 = 0, c1 = 0;
	unsigned int d0 = 0, d1 = 0;
	double first = 0, last = 0, t0 = 0, t1 = 0, t;
	enum { WAITING, WARMING, MEASURING, DONE } phase = WAITING;

	if (fd < 0)
		die("socket");
	/* room for bursts while the receiver waits for the CPU it shares with
	 * the sender (as root past net.core.rmem_max) */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)))
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (bind(fd, (struct sockaddr *)at, sizeof(*at)))
		die("bind");
	for (int i = 0; i < batch; i++) {
		iovs[i] = (struct iovec){.iov_base = bufs[i], .iov_len = sizeof(bufs[i])};
		msgs[i].msg_hdr = (struct msghdr){.msg_iov = &iovs[i], .msg_iovlen = 1};
	}
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		int n = recvmmsg(fd, msgs, batch, MSG_WAITFORONE, NULL);

		t = now();
		if (n > 0) {
			total += n;
			last = t;
			if (phase == WAITING) {
				first = t;
				phase = WARMING;
			}
		} else if (errno != EAGAIN && errno != EINTR) {
			die("recvmmsg");
		}
		/* a window's ends at batch granularity: BATCH datagrams are
		 * tens of microseconds */
		if (phase == WARMING && t - first >= warmup) {
			c0 = total, d0 = socket_drops(fd), t0 = t;
			phase = MEASURING;
		}
		if (phase == MEASURING && t - t0 >= seconds) {
			c1 = total, d1 = socket_drops(fd), t1 = t;
			phase = DONE;
		}
		if (phase != WAITING && t - last >= idle)
			break;
	}
	if (phase != DONE) {
		fprintf(stderr,
			"udp-flood: the datagrams stopped %.3f s into a %.3f s window (after %.3f s of warm-up)\n",
			phase == MEASURING ? last - t0 : 0.0, seconds, warmup);
		return 1;
	}
	printf("packets=%llu seconds=%.3f pps=%.1f drops=%u total=%llu total_drops=%u\n", (unsigned long long)(c1 - c0),
	       t1 - t0, (c1 - c0) / (t1 - t0), d1 - d0, (unsigned long long)total, socket_drops(fd));
	return 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY)};
	/* every option but -a is a number, kept at the place of its letter */
	enum { PORT, BYTES, BATCH, SECONDS, WARMUP, IDLE };
	static const char letters[] = "psbtwi";
	double v[] = {[PORT] = 0, [BYTES] = 64, [BATCH] = 64, [SECONDS] = -1, [WARMUP] = 0.3, [IDLE] = 0.1};
	int opt, sending, have_addr = 0;

	if (argc < 2)
		usage();
	sending = !strcmp(argv[1], "send");
	if (!sending && strcmp(argv[1], "recv"))
		usage();
	optind = 2;
	while ((opt = getopt(argc, argv, "a:p:s:b:t:w:i:")) != -1) {
		const char *at = opt == '?' ? NULL : strchr(letters, opt);

		if (opt == 'a')
			a.sin_addr = ipv4_arg(optarg), have_addr = 1;
		else if (at)
			v[at - letters] = atof(optarg);
		else
			usage();
	}
	if (v[SECONDS] < 0)
		v[SECONDS] = sending ? 2 : 1;
	if (v[PORT] < 1 || v[PORT] > 65535 || v[BYTES] < 1 || v[BYTES] > 1400 || v[BATCH] < 1 || v[BATCH] > MAX_BATCH ||
	    v[SECONDS] <= 0 || v[WARMUP] < 0 || v[IDLE] <= 0 || (sending && !have_addr))
		return fprintf(stderr, "udp-flood: bad arguments\n"), 2;
	a.sin_port = htons((int)v[PORT]);
	return sending ? flood(&a, (int)v[BYTES], (int)v[BATCH], v[SECONDS])
		       : drain(&a, (int)v[BATCH], v[SECONDS], v[WARMUP], v[IDLE]);
}
