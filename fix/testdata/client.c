/* A client for kadiag fix's tests, built static: it connects to argv[1]
 * port argv[2], turns keepalive off after connect when argv[3] is "off",
 * then prints its socket's keepalive options (read with getsockopt) as one
 * JSON line now and on every line read from stdin; a line "off" first
 * turns keepalive off again, as Apache HttpClient does. */
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int opt(int fd, int level, int name) {
	int v = -1;
	socklen_t l = sizeof v;
	getsockopt(fd, level, name, &v, &l);
	return v;
}

static void dump(int fd) {
	printf("{\"fd\":%d,\"keepalive\":%d,\"idle\":%d,\"intvl\":%d,\"cnt\":%d,\"user_timeout\":%d}\n", fd,
	       opt(fd, SOL_SOCKET, SO_KEEPALIVE), opt(fd, IPPROTO_TCP, TCP_KEEPIDLE), opt(fd, IPPROTO_TCP, TCP_KEEPINTVL),
	       opt(fd, IPPROTO_TCP, TCP_KEEPCNT), opt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT));
	fflush(stdout);
}

static void off(int fd) {
	int zero = 0;
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &zero, sizeof zero);
}

int main(int argc, char **argv) {
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
	if (argc < 3 || getaddrinfo(argv[1], argv[2], &hints, &ai) != 0)
		return 2;
	int fd = socket(ai->ai_family, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
		perror("connect");
		return 1;
	}
	if (argc > 3 && strcmp(argv[3], "off") == 0)
		off(fd);
	dump(fd);
	char line[64];
	while (fgets(line, sizeof line, stdin)) {
		if (strncmp(line, "off", 3) == 0)
			off(fd);
		dump(fd);
	}
	return 0;
}
