/*
 * envharness: keepalive.c's configuration parser, compiled from the very
 * same source into a test program (with -fsanitize=address,undefined by
 * preload/sanitize_test.go), driven by Go with fuzzed environments.
 *
 * Protocol on stdin, repeated: a little-endian uint32 count of entries, then
 * per entry a uint32 length and that many bytes ("NAME=value" as in
 * /proc/PID/environ). For each record the program installs exactly those
 * entries as environ, runs load_config and writes one line to stdout:
 *   active enforce debug idle intvl cnt user_timeout
 * Then it exercises the hooks with the configuration, so the sanitizers
 * watch those code paths too. Everything the library wrote to fd 2 (its
 * warnings, debug lines) is followed by the marker "\0end\0\n".
 */
#include "../src/keepalive.c"

#include <stdint.h>
#include <stdio.h>

extern char **environ;

static int read_full(void *p, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = read(0, (char *)p + got, n - got);
		if (r <= 0)
			return 0;
		got += (size_t)r;
	}
	return 1;
}

int main(void)
{
	uint32_t count, len, i;

	init();
	for (;;) {
		char **env;

		if (!read_full(&count, sizeof count))
			return 0;
		if (count > 4096)
			return 3;
		env = calloc(count + 1, sizeof *env);
		for (i = 0; i < count; i++) {
			if (!read_full(&len, sizeof len) || len > (1u << 20))
				return 3;
			env[i] = malloc(len + 1);
			if (!read_full(env[i], len))
				return 3;
			env[i][len] = 0;
		}
		environ = env;
		load_config();
		printf("%d %d %d %d %d %d %d\n", cfg.active, cfg.enforce, cfg.debug, cfg.idle, cfg.intvl,
		       cfg.cnt, cfg.user_timeout);
		fflush(stdout);
		/* The hooks with this configuration: a TCP socket, then an
		 * application weakening each option. */
		{
			int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0), v = 0, big = 100000;
			if (fd >= 0) {
				setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &v, sizeof v);
				setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &big, sizeof big);
				setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &v, sizeof v);
				setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &v, 1);
				close(fd);
			}
		}
		/* Debug lines from the hooks go to fd 2 too: the marker ends the
		 * record's output. NUL cannot occur in an environment value. */
		{
			static const char end[] = "\0end\0\n";
			ssize_t r = write(2, end, sizeof end - 1);
			(void)r;
		}
		environ = NULL;
		for (i = 0; i < count; i++)
			free(env[i]);
		free(env);
	}
}
