// SPDX-License-Identifier: Apache-2.0
/* Connections from many cgroups, as from the pods of a node: listens on
 * PORTS loopback ports (in the cgroup it starts in), then for each cgroup v2
 * directory listed in FILE (one a line) moves itself there and makes one
 * connection to each port, 1 byte each way, closed by the client. Each
 * cgroup's connects then key the exporter's maps once per port.
 *
 *   hop [-p PORT] [-n PORTS] -f FILE
 *
 * Prints "cgroups=N connections=C" and exits. */
#include "net.h"

int main(int argc, char **argv)
{
	int port = 19000, nports = 4, opt, cgroups = 0, conns = 0;
	const char *file = NULL;
	char line[4096], b = 1;
	int lfd[256];
	FILE *f;

	while ((opt = getopt(argc, argv, "p:n:f:")) != -1) {
		if (opt == 'p')
			port = atoi(optarg);
		else if (opt == 'n')
			nports = atoi(optarg);
		else if (opt == 'f')
			file = optarg;
		else
			return fprintf(stderr, "usage: hop [-p PORT] [-n PORTS] -f FILE\n"), 2;
	}
	if (!file || nports < 1 || nports > 256 || port < 1 || port + nports > 65536)
		return fprintf(stderr, "usage: hop [-p PORT] [-n PORTS] -f FILE\n"), 2;
	f = fopen(file, "r");
	if (!f)
		die(file);
	for (int i = 0; i < nports; i++)
		lfd[i] = listen_loopback(port + i, SOCK_CLOEXEC, 16);
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		if (!line[0])
			continue;
		join_cgroup(line);
		cgroups++;
		for (int i = 0; i < nports; i++) {
			int c = connect_loopback(port + i), s;

			if (c < 0)
				die("connect");
			s = accept(lfd[i], NULL, NULL);
			if (s < 0 || !full(c, &b, 1, 1) || !full(s, &b, 1, 0) || !full(s, &b, 1, 1) ||
			    !full(c, &b, 1, 0))
				die("accept/exchange");
			close(c);
			close(s);
			conns++;
		}
	}
	printf("cgroups=%d connections=%d\n", cgroups, conns);
	return 0;
}
