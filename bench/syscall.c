// SPDX-License-Identifier: Apache-2.0
/* Times the cheapest system call, getppid(), in a loop: what every system
 * call of every process pays on entry and exit. Attaching a program to any
 * syscalls:sys_exit_* tracepoint sends all of them, of every task, through
 * the kernel's tracing slow path; this shows what that costs here.
 *
 *   syscall [-t SECONDS]
 *
 * Prints "ns_per_syscall=N". */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	double seconds = 0.5, t0, t;
	long n = 0;
	int opt;

	while ((opt = getopt(argc, argv, "t:")) != -1) {
		if (opt != 't')
			return fprintf(stderr, "usage: syscall [-t SECONDS]\n"), 2;
		seconds = atof(optarg);
	}
	t0 = now();
	do {
		/* syscall(2), not getppid(): no library may answer from a cache */
		for (int i = 0; i < 10000; i++)
			syscall(SYS_getppid);
		n += 10000;
		t = now();
	} while (t - t0 < seconds);
	printf("ns_per_syscall=%.1f\n", (t - t0) * 1e9 / n);
	return 0;
}
