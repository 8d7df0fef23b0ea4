/*
 * Test client for libkadiag_keepalive: reads its own sockets' options with
 * getsockopt, the inside view that the tests compare with the configured
 * values and with kadiag's view from outside. Built at test time for glibc,
 * musl and aarch64.
 *
 *   client tcp4|tcp6 HOST PORT [nonblock] [weaken|strengthen]
 *       connect, print the options, wait for stdin to close
 *   client listen4|listen6 [weaken]
 *       listen on loopback, print "port N", accept one connection, print the
 *       accepted socket's options, wait for stdin to close
 *   client others   UDP, RAW, UNIX and raw-with-IPPROTO_TCP sockets' SO_KEEPALIVE
 *   client errno    errno after failing and succeeding socket()/setsockopt()
 *   client threads N  8 threads each open and check N TCP sockets; prints
 *                   the count whose options differ from the first one's
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef TCP_USER_TIMEOUT
#define TCP_USER_TIMEOUT 18
#endif

static int get(int fd, int level, int name)
{
	int v = -1;
	socklen_t len = sizeof v;

	if (getsockopt(fd, level, name, &v, &len) != 0)
		return -errno;
	return v;
}

static void show(const char *what, int fd)
{
	printf("%s keepalive=%d idle=%d intvl=%d cnt=%d user_timeout=%d\n", what,
	       get(fd, SOL_SOCKET, SO_KEEPALIVE), get(fd, IPPROTO_TCP, TCP_KEEPIDLE),
	       get(fd, IPPROTO_TCP, TCP_KEEPINTVL), get(fd, IPPROTO_TCP, TCP_KEEPCNT),
	       get(fd, IPPROTO_TCP, TCP_USER_TIMEOUT));
	fflush(stdout);
}

static void set(int fd, int level, int name, int v)
{
	if (setsockopt(fd, level, name, &v, sizeof v) != 0) {
		fprintf(stderr, "setsockopt %d/%d=%d: %s\n", level, name, v, strerror(errno));
		exit(3);
	}
}

/* app applies what Apache HttpClient / AWS SDK v1 do (weaken) or asks for more (strengthen). */
static void app(int fd, const char *mode)
{
	if (!mode)
		return;
	if (!strcmp(mode, "weaken")) {
		set(fd, SOL_SOCKET, SO_KEEPALIVE, 0);
		set(fd, IPPROTO_TCP, TCP_KEEPIDLE, 7200);
		set(fd, IPPROTO_TCP, TCP_KEEPINTVL, 75);
		set(fd, IPPROTO_TCP, TCP_KEEPCNT, 9);
		set(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, 0);
	} else if (!strcmp(mode, "strengthen")) {
		set(fd, SOL_SOCKET, SO_KEEPALIVE, 1);
		set(fd, IPPROTO_TCP, TCP_KEEPIDLE, 1);
		set(fd, IPPROTO_TCP, TCP_KEEPINTVL, 1);
		set(fd, IPPROTO_TCP, TCP_KEEPCNT, 1);
		set(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, 500);
	}
}

static void wait_stdin(void)
{
	char buf[64];

	while (read(0, buf, sizeof buf) > 0)
		;
}

static int addr(int family, const char *host, int port, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof *ss);
	if (family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)ss;
		a->sin_family = AF_INET;
		a->sin_port = htons(port);
		*len = sizeof *a;
		return inet_pton(AF_INET, host, &a->sin_addr) == 1 ? 0 : -1;
	}
	struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
	a->sin6_family = AF_INET6;
	a->sin6_port = htons(port);
	*len = sizeof *a;
	return inet_pton(AF_INET6, host, &a->sin6_addr) == 1 ? 0 : -1;
}

static int tcp(int family, const char *host, int port, int nonblock, int mptcp, const char *mode)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd = socket(family, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK | SOCK_CLOEXEC : 0), mptcp ? 262 : 0);

	if (fd < 0 || addr(family, host, port, &ss, &len) != 0) {
		perror("socket");
		return 2;
	}
	app(fd, mode);
	if (connect(fd, (struct sockaddr *)&ss, len) != 0) {
		if (errno != EINPROGRESS) {
			perror("connect");
			return 2;
		}
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		if (poll(&p, 1, 5000) != 1 || get(fd, SOL_SOCKET, SO_ERROR) != 0) {
			fprintf(stderr, "connect did not complete\n");
			return 2;
		}
	}
	show("connected", fd);
	wait_stdin();
	return 0;
}

static int listener(int family, const char *mode)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd = socket(family, SOCK_STREAM, IPPROTO_TCP), c;

	if (fd < 0 || addr(family, family == AF_INET ? "127.0.0.1" : "::1", 0, &ss, &len) != 0 ||
	    bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 4) != 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
		perror("listen");
		return 2;
	}
	app(fd, mode);
	printf("port %d\n", ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
						     : ((struct sockaddr_in6 *)&ss)->sin6_port));
	fflush(stdout);
	c = accept(fd, NULL, NULL);
	if (c < 0) {
		perror("accept");
		return 2;
	}
	show("accepted", c);
	wait_stdin();
	return 0;
}

static void other(const char *what, int domain, int type, int protocol)
{
	int fd = socket(domain, type, protocol);

	if (fd < 0) {
		printf("%s error=%s\n", what, strerror(errno));
		return;
	}
	printf("%s keepalive=%d\n", what, get(fd, SOL_SOCKET, SO_KEEPALIVE));
	close(fd);
}

static void report(const char *what, int r)
{
	printf("%s r=%d errno=%d\n", what, r, errno);
}

static int errnos(void)
{
	int one = 1, zero = 0, big = 40000, fd;

	errno = 4242;
	fd = socket(AF_INET, SOCK_STREAM, 0);
	report("socket-ok", fd >= 0);
	errno = 4242;
	report("socket-eafnosupport", socket(12345, SOCK_STREAM, 0));
	errno = 4242;
	report("socket-eprotonosupport", socket(AF_INET, SOCK_STREAM, IPPROTO_UDP));
	errno = 4242;
	report("socket-einval", socket(AF_INET, 12345, 0));
	errno = 4242;
	report("setsockopt-ok", setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one));
	errno = 4242;
	report("setsockopt-weaken-ok", setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &zero, sizeof zero));
	errno = 4242;
	report("setsockopt-enotsock", setsockopt(0, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one));
	errno = 4242;
	report("setsockopt-ebadf", setsockopt(999, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one));
	errno = 4242;
	report("setsockopt-einval-len", setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, 1));
	errno = 4242;
	report("setsockopt-einval-idle", setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &big, sizeof big));
	errno = 4242;
	report("setsockopt-efault", setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, (void *)8, sizeof big));
	errno = 4242;
	report("setsockopt-enoprotoopt", setsockopt(fd, IPPROTO_TCP, 9999, &one, sizeof one));
	return 0;
}

static long per_thread;
static int want_ka, want_idle;
static int bad;

static void *worker(void *arg)
{
	(void)arg;
	for (long i = 0; i < per_thread; i++) {
		int fd = socket(i % 2 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || get(fd, SOL_SOCKET, SO_KEEPALIVE) != want_ka ||
		    get(fd, IPPROTO_TCP, TCP_KEEPIDLE) != want_idle)
			__atomic_add_fetch(&bad, 1, __ATOMIC_RELAXED);
		close(fd);
	}
	return NULL;
}

static int threads(long n)
{
	pthread_t th[8];
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	want_ka = get(fd, SOL_SOCKET, SO_KEEPALIVE);
	want_idle = get(fd, IPPROTO_TCP, TCP_KEEPIDLE);
	close(fd);
	per_thread = n;
	for (int i = 0; i < 8; i++)
		pthread_create(&th[i], NULL, worker, NULL);
	for (int i = 0; i < 8; i++)
		pthread_join(th[i], NULL);
	printf("threads keepalive=%d idle=%d bad=%d\n", want_ka, want_idle, bad);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 5 && (!strcmp(argv[1], "tcp4") || !strcmp(argv[1], "tcp6"))) {
		int nonblock = 0, mptcp = 0;
		const char *mode = NULL;
		for (int i = 5; i < argc; i++) {
			if (!strcmp(argv[i], "nonblock"))
				nonblock = 1;
			else if (!strcmp(argv[i], "mptcp"))
				mptcp = 1;
			else
				mode = argv[i];
		}
		return tcp(argv[1][3] == '4' ? AF_INET : AF_INET6, argv[2], atoi(argv[3]) + atoi(argv[4]) * 0,
			   nonblock, mptcp, mode);
	}
	if (argc >= 2 && (!strcmp(argv[1], "listen4") || !strcmp(argv[1], "listen6")))
		return listener(argv[1][6] == '4' ? AF_INET : AF_INET6, argc > 2 ? argv[2] : NULL);
	if (argc == 2 && !strcmp(argv[1], "others")) {
		other("udp4", AF_INET, SOCK_DGRAM, 0);
		other("udp6", AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK, 0);
		other("unix", AF_UNIX, SOCK_STREAM, 0);
		other("raw-tcp", AF_INET, SOCK_RAW, IPPROTO_TCP);
		other("raw6-tcp", AF_INET6, SOCK_RAW, IPPROTO_TCP);
		other("udp4-as-stream-udp", AF_INET, SOCK_DGRAM, IPPROTO_UDP);
		other("sctp", AF_INET, SOCK_STREAM, 132);
		return 0;
	}
	if (argc == 3 && !strcmp(argv[1], "threads"))
		return threads(atol(argv[2]));
	if (argc == 2 && !strcmp(argv[1], "errno"))
		return errnos();
	fprintf(stderr, "usage: client tcp4|tcp6 HOST PORT _ [nonblock] [mptcp] [weaken|strengthen] | listen4|listen6 [weaken] | others | errno\n");
	return 2;
}
