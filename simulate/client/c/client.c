/*
 * kadiag-client: the bundled HTTP client of `kadiag simulate`.
 *
 * It is a C program on purpose: the point of the lab is to show what the
 * LD_PRELOAD keepalive library does to an ordinary dynamically linked libc
 * program, and a Go client would ignore LD_PRELOAD (raw syscalls).
 *
 * usage: kadiag-client [-k] [-i IDLE] [-n INTVL] [-c CNT] [-t TIMEOUT_MS] URL
 *   -k  turn SO_KEEPALIVE on itself (the "app" scenario); -i/-n/-c set
 *       TCP_KEEPIDLE/TCP_KEEPINTVL/TCP_KEEPCNT in seconds/probes.
 *   -t  give up waiting for the response after TIMEOUT_MS.
 *
 * One line on stdout says what happened; the exit status is the outcome:
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum {
	EXIT_OK = 0,        /* a 2xx response arrived */
	EXIT_TIMEOUT = 10,  /* nothing arrived before -t */
	EXIT_RESET = 11,    /* the connection was reset (ECONNRESET, EPIPE) */
	EXIT_DEAD = 12,     /* the kernel gave up on the peer (ETIMEDOUT: keepalive or retransmits) */
	EXIT_ERROR = 13,    /* anything else: bad URL, connect refused, ... */
	EXIT_STATUS = 14,   /* a response other than 2xx */
	EXIT_USAGE = 64,
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double start;

static int fail_errno(const char *what, int err)
{
	printf("%s after %.3fs: %s\n", what, now() - start, strerror(err));
	fflush(stdout);
	if (err == ECONNRESET || err == EPIPE)
		return EXIT_RESET;
	if (err == ETIMEDOUT)
		return EXIT_DEAD;
	return EXIT_ERROR;
}

/* report prints the keepalive options the socket really carries, so the lab
 * shows what a preload library or sysctl did (or did not) change. */
static void report(int fd)
{
	int on = 0, idle = 0, intvl = 0, cnt = 0;
	socklen_t l = sizeof(int);
	getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, &l);
	l = sizeof(int);
	getsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, &l);
	l = sizeof(int);
	getsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, &l);
	l = sizeof(int);
	getsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, &l);
	fprintf(stderr, "kadiag-client: socket keepalive=%d idle=%d intvl=%d cnt=%d\n", on, idle, intvl, cnt);
}

int main(int argc, char **argv)
{
	int keepalive = 0, idle = 0, intvl = 0, cnt = 0, opt;
	long timeout_ms = 0;
	while ((opt = getopt(argc, argv, "ki:n:c:t:")) != -1) {
		switch (opt) {
		case 'k': keepalive = 1; break;
		case 'i': idle = atoi(optarg); break;
		case 'n': intvl = atoi(optarg); break;
		case 'c': cnt = atoi(optarg); break;
		case 't': timeout_ms = atol(optarg); break;
		default:
			fprintf(stderr, "usage: kadiag-client [-k] [-i IDLE] [-n INTVL] [-c CNT] [-t TIMEOUT_MS] URL\n");
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 1 || strncmp(argv[optind], "http://", 7) != 0) {
		fprintf(stderr, "kadiag-client: need one http:// URL\n");
		return EXIT_USAGE;
	}

	/* http://HOST:PORT/PATH with HOST possibly [v6] */
	char host[256], port[16] = "80", path[512] = "/";
	const char *p = argv[optind] + 7, *end;
	if (*p == '[') {
		end = strchr(p, ']');
		if (!end || end - p - 1 >= (long)sizeof(host))
			return EXIT_USAGE;
		memcpy(host, p + 1, end - p - 1);
		host[end - p - 1] = 0;
		p = end + 1;
	} else {
		end = p + strcspn(p, ":/");
		if (end - p >= (long)sizeof(host))
			return EXIT_USAGE;
		memcpy(host, p, end - p);
		host[end - p] = 0;
		p = end;
	}
	if (*p == ':') {
		size_t n = strcspn(p + 1, "/");
		if (n == 0 || n >= sizeof(port))
			return EXIT_USAGE;
		memcpy(port, p + 1, n);
		port[n] = 0;
		p += 1 + n;
	}
	if (*p == '/')
		snprintf(path, sizeof(path), "%s", p);

	start = now();
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
	struct addrinfo *ai;
	int rc = getaddrinfo(host, port, &hints, &ai);
	if (rc != 0) {
		printf("bad address %s:%s: %s\n", host, port, gai_strerror(rc));
		return EXIT_ERROR;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM, 0);
	if (fd < 0)
		return fail_errno("socket", errno);
	if (keepalive) {
		int one = 1;
		if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) < 0 ||
		    (idle && setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle)) < 0) ||
		    (intvl && setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl)) < 0) ||
		    (cnt && setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt)) < 0))
			return fail_errno("setsockopt", errno);
	}
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0)
		return fail_errno("connect", errno);
	report(fd);

	char req[1024];
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: kadiag-client\r\nConnection: close\r\n\r\n",
			 path, host, port);
	if (send(fd, req, n, MSG_NOSIGNAL) != n)
		return fail_errno("send", errno);

	char buf[4096];
	size_t got = 0;
	for (;;) {
		int wait = -1;
		if (timeout_ms > 0) {
			double left = timeout_ms / 1000.0 - (now() - start);
			if (left <= 0) {
				printf("no response after %.3fs\n", now() - start);
				return EXIT_TIMEOUT;
			}
			wait = (int)(left * 1000) + 1;
		}
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		rc = poll(&pfd, 1, wait);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0)
			return fail_errno("poll", errno);
		if (rc == 0)
			continue;
		ssize_t r = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return fail_errno("recv", errno);
		}
		got += r;
		buf[got] = 0;
		if (r == 0 || got == sizeof(buf) - 1 || strstr(buf, "\r\n\r\n"))
			break;
	}
	int status = 0;
	if (sscanf(buf, "HTTP/%*d.%*d %d", &status) != 1) {
		printf("no HTTP response after %.3fs (%zu bytes)\n", now() - start, got);
		return got == 0 ? EXIT_RESET : EXIT_ERROR;
	}
	printf("status %d after %.3fs\n", status, now() - start);
	return status >= 200 && status < 300 ? EXIT_OK : EXIT_STATUS;
}
