/* exporter-load: the exporter benchmark's load. Forks PAIRS server processes
 * (each listens on 127.0.0.1:BASE+i and accepts PER connections) and PAIRS
 * client processes (each opens PER connections to its server): 2*PAIRS
 * processes holding 2*PAIRS*PER TCP sockets. A third of the client
 * connections have keepalive off, a third a 600 s first probe, a third
 * 30 s, so the scan judges all kinds. Prints "ready" when every connection
 * is up and holds them until stdin closes. Usage: exporter-load PAIRS PER BASE */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what) { perror(what); _exit(1); }

static void hold(int ready) {
	char c = 1;
	if (write(ready, &c, 1) != 1) die("write");
	close(ready);
	for (;;) pause();
}

int main(int argc, char **argv) {
	if (argc != 4) { fprintf(stderr, "usage: exporter-load PAIRS PER BASEPORT\n"); return 2; }
	int pairs = atoi(argv[1]), per = atoi(argv[2]), base = atoi(argv[3]);
	int p[2];
	if (pipe(p)) die("pipe");
	pid_t *kids = calloc(2 * pairs, sizeof(pid_t));
	int *ls = calloc(pairs, sizeof(int));
	struct sockaddr_in *as = calloc(pairs, sizeof(struct sockaddr_in));
	/* Every listener is bound before any client connects: a client's
	 * ephemeral port would otherwise take a later listener's port. */
	for (int i = 0; i < pairs; i++) {
		int one = 1;
		as[i] = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons(base + i) };
		as[i].sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		ls[i] = socket(AF_INET, SOCK_STREAM, 0);
		setsockopt(ls[i], SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (ls[i] < 0 || bind(ls[i], (void *)&as[i], sizeof as[i]) || listen(ls[i], 4096)) die("listen");
	}
	for (int i = 0; i < pairs; i++) {
		int one = 1;
		if ((kids[2 * i] = fork()) == 0) {
			close(p[0]);
			for (int j = 0; j < pairs; j++)
				if (j != i) close(ls[j]);
			for (int k = 0; k < per; k++)
				if (accept(ls[i], NULL, NULL) < 0) die("accept");
			hold(p[1]);
		}
		if ((kids[2 * i + 1] = fork()) == 0) {
			close(p[0]);
			for (int j = 0; j < pairs; j++) close(ls[j]);
			for (int k = 0; k < per; k++) {
				int s = socket(AF_INET, SOCK_STREAM, 0);
				if (s < 0 || connect(s, (void *)&as[i], sizeof as[i])) die("connect");
				if (k % 3) {
					int idle = k % 3 == 1 ? 600 : 30;
					setsockopt(s, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
					setsockopt(s, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
				}
			}
			hold(p[1]);
		}
	}
	for (int i = 0; i < pairs; i++) close(ls[i]);
	close(p[1]);
	char c;
	for (int n = 0; n < 2 * pairs; n++)
		if (read(p[0], &c, 1) != 1) { fprintf(stderr, "exporter-load: a child failed\n"); goto out; }
	printf("ready\n");
	fflush(stdout);
	while (read(0, &c, 1) > 0) {}
out:
	for (int i = 0; i < 2 * pairs; i++) kill(kids[i], SIGKILL);
	while (wait(NULL) > 0) {}
	return 0;
}
