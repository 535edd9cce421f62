// SPDX-License-Identifier: Apache-2.0
/* Loopback TCP connection churn: client threads connect, send a request,
 * receive an equal reply and close, as fast as they can for a fixed time;
 * server threads accept and answer. Written in C so that the kernel's TCP
 * path, where the probes run, is nearly all of the cost.
 *
 *   churn [-t SECONDS] [-w WARMUP] [-c CLIENTS] [-p PORT] [-n PORTS] [-b BYTES]
 *         [-r RATE] [-g CGROUP_DIR,...]
 *   churn -i MILLISECONDS [-c ...]
 *
 * -r paces the clients to RATE connections a second in all (each client
 * RATE/CLIENTS), instead of flat out.
 * -g runs the clients and servers in one process per cgroup v2 directory
 * given, each moved there before it opens a socket, so that the sockets
 * belong to as many cgroups as a node's pods would (a socket is its
 * creator's cgroup's; an accepted one, its listener's). Process j of K
 * runs client threads j, j+K, ... and the servers of ports j, j+K, ...;
 * CLIENTS and PORTS must be multiples of K, so every client connects to a
 * port of its own process, as without -g. Counts and CPU time are of all
 * K processes.
 *
 * Prints one line when done:
 *   connections=N seconds=S rate=R errors=E cpu_seconds=C per_cpu_second=P
 * cpu_seconds is this process's user+system time over the measured window
 * (with -g, its K processes'; softirq work done in their context included),
 * so per_cpu_second changes less than rate when other tenants steal the CPU.
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
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 256
#define MAX_PROCS   64

static int nbytes = 1024;
static double pace_s; /* -r: seconds between one client's connects; 0: flat out */

/* shared by the processes of -g (one mapping made before they fork) */
struct shared {
	atomic_int stop;
	atomic_ulong completed, errors;
};
static struct shared *shared;

static pid_t procs[MAX_PROCS];
static int nprocs;
static volatile sig_atomic_t terminated;

static double now(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* user and system time of the load: this process's, or with -g its
 * children's (a process's CPU clock, which other processes may read) */
static double cpu_seconds(void)
{
	struct rusage ru;
	double sum = 0;

	if (!nprocs) {
		getrusage(RUSAGE_SELF, &ru);
		return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
	}
	for (int j = 0; j < nprocs; j++) {
		clockid_t clock;

		if (!clock_getcpuclockid(procs[j], &clock))
			sum += now(clock);
	}
	return sum;
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
	double next = now(CLOCK_MONOTONIC);

	while (!atomic_load_explicit(&shared->stop, memory_order_relaxed)) {
		int fd, ok;

		if (pace_s > 0) {
			double t = now(CLOCK_MONOTONIC);

			/* a client that fell behind (a busy CPU) starts again from
			 * now rather than catching up in a burst */
			next = next + pace_s < t - 1 ? t : next + pace_s;
			if (next > t) {
				struct timespec ts = {(time_t)next, (long)((next - (time_t)next) * 1e9)};

				clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
			}
		}
		fd = socket(AF_INET, SOCK_STREAM, 0);
		ok = fd >= 0 && connect(fd, (struct sockaddr *)&c->to, sizeof(c->to)) == 0 &&
		     full(fd, buf, nbytes, 1) && full(fd, buf, nbytes, 0);
		if (fd >= 0)
			close(fd);
		if (ok)
			atomic_fetch_add_explicit(&shared->completed, 1, memory_order_relaxed);
		else {
			atomic_fetch_add_explicit(&shared->errors, 1, memory_order_relaxed);
			usleep(1000); /* e.g. no free local port: back off, do not spin */
		}
	}
	return NULL;
}

/* The part of the load process j of k runs: the servers of ports j, j+k, ...
 * and clients j, j+k, ... (k = 1: all of it). */
static void start_part(int j, int k, int clients, int port, int nports)
{
	static struct client cl[MAX_THREADS];
	pthread_t t;

	/* several server ports multiply the 4-tuples clients can use while
	 * their earlier connections sit in TIME_WAIT */
	for (int p = j; p < nports; p += k) {
		int lfd = listen_loopback(port + p, 0, 4096);

		for (int i = p; i < clients; i += nports)
			if (pthread_create(&t, NULL, serve, (void *)(long)lfd))
				die("pthread_create");
		if (nports > clients && pthread_create(&t, NULL, serve, (void *)(long)lfd))
			die("pthread_create");
	}
	for (int i = j; i < clients; i += k) {
		cl[i].to = (struct sockaddr_in){.sin_family = AF_INET,
						.sin_port = htons(port + i % nports),
						.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		if (pthread_create(&t, NULL, connect_loop, &cl[i]))
			die("pthread_create");
	}
}

/* -g: one process per cgroup, each running its part of the load until this
 * one ends (it dies with its parent, whatever ends it). */
static void fork_parts(char **dirs, int k, int clients, int port, int nports)
{
	pid_t parent = getpid();

	for (int j = 0; j < k; j++) {
		pid_t pid = fork();

		if (pid < 0)
			die("fork");
		if (pid == 0) {
			if (prctl(PR_SET_PDEATHSIG, SIGKILL) || getppid() != parent)
				_exit(1);
			join_cgroup(dirs[j]);
			start_part(j, k, clients, port, nports);
			for (;;)
				pause();
		}
		procs[nprocs++] = pid;
	}
}

/* Ends the processes of -g and waits for them, so that their ports and
 * cgroups are free when this one has exited. */
static void end_parts(void)
{
	for (int j = 0; j < nprocs; j++)
		kill(procs[j], SIGKILL);
	for (int j = 0; j < nprocs; j++)
		waitpid(procs[j], NULL, 0);
}

static void on_terminate(int sig)
{
	(void)sig;
	terminated = 1;
}

int main(int argc, char **argv)
{
	double seconds = 5, warmup = 0.5, interval_ms = 0, rate = 0;
	int clients = 4, port = 18000, nports = 4, opt, ngroups = 0;
	char *groups[MAX_PROCS], *list = NULL;

	while ((opt = getopt(argc, argv, "t:w:c:p:n:b:i:r:g:")) != -1) {
		switch (opt) {
		case 'r':
			rate = atof(optarg);
			break;
		case 'g':
			list = optarg;
			break;
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
					"PORT] [-n PORTS] [-b BYTES] [-r RATE] [-g CGROUP_DIR,...]\n");
			return 2;
		}
	}
	for (char *g = list ? strtok(list, ",") : NULL; g && ngroups < MAX_PROCS; g = strtok(NULL, ","))
		groups[ngroups++] = g;
	if (clients < 1 || clients > MAX_THREADS || nports < 1 || nbytes < 1 || seconds <= 0 || rate < 0 ||
	    (list && (!ngroups || clients % ngroups || nports % ngroups)))
		return fprintf(stderr, "churn: bad arguments\n"), 2;
	if (rate > 0)
		pace_s = clients / rate;
	shared = mmap(NULL, sizeof(*shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shared == MAP_FAILED)
		die("mmap");

	if (ngroups) {
		struct sigaction sa = {.sa_handler = on_terminate};

		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGINT, &sa, NULL);
		fork_parts(groups, ngroups, clients, port, nports);
	} else {
		start_part(0, 1, clients, port, nports);
	}

	if (interval_ms > 0) {
		while (!terminated) {
			printf("sample %.6f %lu %.6f\n", now(CLOCK_REALTIME), atomic_load(&shared->completed),
			       cpu_seconds());
			fflush(stdout);
			usleep(interval_ms * 1e3);
		}
		end_parts();
		return 0;
	}

	usleep(warmup * 1e6);
	unsigned long n0 = atomic_load(&shared->completed), e0 = atomic_load(&shared->errors);
	double t0 = now(CLOCK_MONOTONIC), c0 = cpu_seconds();
	usleep(seconds * 1e6);
	unsigned long n1 = atomic_load(&shared->completed), e1 = atomic_load(&shared->errors);
	double t1 = now(CLOCK_MONOTONIC), c1 = cpu_seconds();
	atomic_store(&shared->stop, 1);
	end_parts();

	double cpu = c1 - c0;
	printf("connections=%lu seconds=%.3f rate=%.1f errors=%lu cpu_seconds=%.3f per_cpu_second=%.1f\n", n1 - n0,
	       t1 - t0, (n1 - n0) / (t1 - t0), e1 - e0, cpu, cpu > 0 ? (n1 - n0) / cpu : 0);
	fflush(stdout);
	_exit(0); /* threads may be blocked in the kernel: do not wait for them */
}
