/*
 * libkadiag_keepalive: an LD_PRELOAD library that turns TCP keepalive on for
 * every IPv4/IPv6 TCP socket a dynamically linked process creates, so that
 * middleboxes which forget idle flows (NAT gateways, load balancers) see
 * traffic before their idle timeout. See docs/preload.md.
 *
 * Rules this file keeps, because the libraries in the field each broke one:
 *  - only AF_INET/AF_INET6 + SOCK_STREAM (after masking SOCK_NONBLOCK and
 *    SOCK_CLOEXEC) + protocol 0, IPPROTO_TCP or IPPROTO_MPTCP is touched
 *    (MPTCP flows cross the same middleboxes; it takes SO_KEEPALIVE and
 *    TCP_KEEPIDLE/INTVL/CNT but has no TCP_USER_TIMEOUT);
 *  - errno after every hooked call is what the application would see without
 *    the library, and the library's own failures never reach it;
 *  - configuration is read once, before main in the normal case; the hot
 *    path is one atomic load, no malloc, no locks, no stdio;
 *  - it never aborts, exits or writes to stdout; warnings go to fd 2.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/*
 * A library linked against glibc >= 2.34 binds dlsym@GLIBC_2.34 and would not
 * load on RHEL 8, Amazon Linux 2 or Debian 11. Bind the oldest version of each
 * architecture instead; libdl is linked (--no-as-needed) so that glibc < 2.34,
 * where dlsym lives in libdl.so.2, finds it.
 */
#if defined(__GLIBC__) && defined(__x86_64__)
__asm__(".symver dlsym,dlsym@GLIBC_2.2.5");
#elif defined(__GLIBC__) && defined(__aarch64__)
__asm__(".symver dlsym,dlsym@GLIBC_2.17");
#endif

#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP 262
#endif
#ifndef TCP_USER_TIMEOUT
#define TCP_USER_TIMEOUT 18
#endif

#define EXPORT __attribute__((visibility("default")))

/* Linux limits (net/ipv4/tcp.c: MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL, MAX_TCP_KEEPCNT). */
#define MAX_KEEPIDLE 32767
#define MAX_KEEPINTVL 32767
#define MAX_KEEPCNT 127

/* A setting that is "unset" stays at the kernel's (per-netns sysctl) default. */
#define UNSET (-1)

static struct {
	int active;       /* KADIAG_KEEPALIVE not off */
	int enforce;      /* KADIAG_ENFORCE not 0 */
	int debug;        /* KADIAG_DEBUG=1 */
	int idle;         /* seconds or UNSET */
	int intvl;        /* seconds or UNSET */
	int cnt;          /* probes or UNSET */
	int user_timeout; /* milliseconds or UNSET */
} cfg;

typedef int (*socket_fn)(int, int, int);
typedef int (*setsockopt_fn)(int, int, int, const void *, socklen_t);

static socket_fn real_socket;
static setsockopt_fn real_setsockopt;

/* 0 not started, 1 being initialised, 2 ready. */
static int state;

static int sys_socket(int domain, int type, int protocol)
{
	return (int)syscall(SYS_socket, domain, type, protocol);
}

static int sys_setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	return (int)syscall(SYS_setsockopt, fd, level, name, val, len);
}

/* ---- messages: write(2) only, so nothing allocates and stdout stays clean ---- */

static size_t append(char *buf, size_t off, size_t cap, const char *s)
{
	while (*s && off + 1 < cap)
		buf[off++] = *s++;
	buf[off] = 0;
	return off;
}

static size_t append_int(char *buf, size_t off, size_t cap, long v)
{
	char tmp[24];
	int n = 0;
	unsigned long u = v < 0 ? -(unsigned long)v : (unsigned long)v;

	do {
		tmp[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u && n < 22);
	if (v < 0)
		tmp[n++] = '-';
	while (n > 0 && off + 1 < cap)
		buf[off++] = tmp[--n];
	buf[off] = 0;
	return off;
}

/*
 * stderr_id is what fd 2 was when the library loaded. An application that
 * closes stderr gets its next socket as fd 2; a debug line written there
 * would corrupt its stream (or kill it with SIGPIPE), so emit checks first.
 * The raw syscall keeps the library off fstat@GLIBC_2.33.
 */
static struct {
	int ok;
	unsigned long dev, ino;
} stderr_id;

static int stderr_is(unsigned long *dev, unsigned long *ino)
{
	struct stat st;

	if (syscall(SYS_fstat, 2, &st) != 0)
		return 0;
	*dev = (unsigned long)st.st_dev;
	*ino = (unsigned long)st.st_ino;
	return 1;
}

static void emit(const char *buf, size_t len)
{
	unsigned long dev, ino;
	ssize_t r;

	if (!stderr_id.ok || !stderr_is(&dev, &ino) || dev != stderr_id.dev || ino != stderr_id.ino)
		return;
	r = write(2, buf, len);
	(void)r;
}

/* ---- configuration ---- */

/*
 * parse_value reads whole seconds ("90"), or a number with unit s, m or h
 * ("90s", "5m", "1h"); with allow_ms also "ms". It returns the value in the
 * unit asked for (1 = seconds, 1000 = milliseconds), or -1.
 */
static long parse_value(const char *s, int allow_units, int allow_ms, long scale)
{
	long v = 0, mult;
	const char *p = s;

	if (*p < '0' || *p > '9')
		return -1;
	/*
	 * No setting takes more than INT_MAX (TCP_USER_TIMEOUT in ms); stopping
	 * there keeps v * 3600 * 1000 far inside a 64-bit long.
	 */
	for (; *p >= '0' && *p <= '9'; p++) {
		v = v * 10 + (*p - '0');
		if (v > 2147483647L)
			return -1;
	}
	if (*p == 0)
		return v * scale;
	if (!allow_units)
		return -1;
	if (strcmp(p, "s") == 0)
		mult = scale;
	else if (strcmp(p, "m") == 0)
		mult = 60 * scale;
	else if (strcmp(p, "h") == 0)
		mult = 3600 * scale;
	else if (allow_ms && strcmp(p, "ms") == 0)
		return v;
	else
		return -1;
	return v * mult;
}

/*
 * warn_ignored prints one line of at most cap (<= 512) bytes: ignoring
 * VAR="VAL": want WANT; OPT CONSEQUENCE. A value too long for the line is
 * cut, never the newline.
 */
static void warn_ignored(size_t cap, const char *var, const char *val, const char *want,
			 const char *opt, const char *consequence)
{
	char buf[512];
	size_t n = 0;

	if (cap > sizeof buf)
		cap = sizeof buf;

	n = append(buf, n, cap, "libkadiag_keepalive: ignoring ");
	n = append(buf, n, cap, var);
	n = append(buf, n, cap, "=\"");
	n = append(buf, n, cap, val);
	n = append(buf, n, cap, "\": want ");
	n = append(buf, n, cap, want);
	n = append(buf, n, cap, "; ");
	n = append(buf, n, cap, opt);
	n = append(buf, n, cap, consequence);
	if (n > 0 && buf[n - 1] != '\n')
		buf[n - 1] = '\n';
	emit(buf, n);
}

/*
 * setting reads KADIAG_<name>, falling back to the bare <name> that
 * libkeepalive users already have, and validates it against [lo, hi].
 */
static int setting(const char *kadiag_var, const char *bare_var, int def, long lo, long hi,
		   int allow_units, int allow_ms, long scale, const char *form, const char *opt)
{
	const char *var = kadiag_var;
	const char *val = getenv(kadiag_var);
	long v;

	if (!val && bare_var) {
		var = bare_var;
		val = getenv(bare_var);
	}
	if (!val)
		return def;
	v = parse_value(val, allow_units, allow_ms, scale);
	if (v < lo || v > hi) {
		warn_ignored(512, var, val, form, opt, " stays at the kernel default\n");
		return UNSET;
	}
	return (int)v;
}

/* flag returns 1 for on/1/true/yes, 0 for off/0/false/no, def when unset. */
static int flag(const char *var, int def)
{
	const char *v = getenv(var);

	if (!v || !*v)
		return def;
	if (!strcmp(v, "1") || !strcasecmp(v, "on") || !strcasecmp(v, "true") || !strcasecmp(v, "yes"))
		return 1;
	if (!strcmp(v, "0") || !strcasecmp(v, "off") || !strcasecmp(v, "false") || !strcasecmp(v, "no"))
		return 0;
	warn_ignored(256, var, v, "on or off (1 or 0)", "", "keeping the default\n");
	return def;
}

static void load_config(void)
{
	const char *secs = "whole seconds 1-32767, optionally with unit s, m or h (90s, 5m, 1h)";

	cfg.active = flag("KADIAG_KEEPALIVE", 1);
	cfg.enforce = flag("KADIAG_ENFORCE", 1);
	cfg.debug = flag("KADIAG_DEBUG", 0);
	cfg.idle = setting("KADIAG_KEEPIDLE", "KEEPIDLE", 60, 1, MAX_KEEPIDLE, 1, 0, 1, secs,
			   "TCP_KEEPIDLE");
	cfg.intvl = setting("KADIAG_KEEPINTVL", "KEEPINTVL", 15, 1, MAX_KEEPINTVL, 1, 0, 1, secs,
			    "TCP_KEEPINTVL");
	cfg.cnt = setting("KADIAG_KEEPCNT", "KEEPCNT", 4, 1, MAX_KEEPCNT, 0, 0, 1,
			  "a whole number of probes 1-127", "TCP_KEEPCNT");
	cfg.user_timeout = setting("KADIAG_USER_TIMEOUT", NULL, UNSET, 1, 2147483647L, 1, 1, 1000,
				   "a duration 1ms-2147483s: whole seconds or with unit ms, s, m or h",
				   "TCP_USER_TIMEOUT");
}

static void resolve(void)
{
	real_socket = (socket_fn)dlsym(RTLD_NEXT, "socket");
	real_setsockopt = (setsockopt_fn)dlsym(RTLD_NEXT, "setsockopt");
	/* Without a next definition (odd link orders), the kernel still is one. */
	if (!real_socket)
		real_socket = sys_socket;
	if (!real_setsockopt)
		real_setsockopt = sys_setsockopt;
}

/*
 * init runs once: from the constructor in the normal case, or from the first
 * hooked call when another library's constructor opens a socket before ours
 * ran. Threads racing for it wait only during that first call.
 */
static void init(void)
{
	int expected = 0;
	int saved = errno;

	if (__atomic_compare_exchange_n(&state, &expected, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
		resolve();
		stderr_id.ok = stderr_is(&stderr_id.dev, &stderr_id.ino);
		load_config();
		__atomic_store_n(&state, 2, __ATOMIC_RELEASE);
	} else {
		while (__atomic_load_n(&state, __ATOMIC_ACQUIRE) != 2)
			sched_yield();
	}
	errno = saved;
}

__attribute__((constructor)) static void kadiag_keepalive_init(void)
{
	init();
}

static inline void ready(void)
{
	if (__builtin_expect(__atomic_load_n(&state, __ATOMIC_ACQUIRE) != 2, 0))
		init();
}

/* ---- the hooks ---- */

static int managed(int domain, int type, int protocol)
{
	type &= ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
	return (domain == AF_INET || domain == AF_INET6) && type == SOCK_STREAM &&
	       (protocol == 0 || protocol == IPPROTO_TCP || protocol == IPPROTO_MPTCP);
}

static void set_int(int fd, int level, int name, int v)
{
	if (v != UNSET)
		real_setsockopt(fd, level, name, &v, sizeof v);
}

static size_t append_setting(char *buf, size_t off, size_t cap, const char *name, int v)
{
	off = append(buf, off, cap, name);
	if (v == UNSET)
		return append(buf, off, cap, "default");
	return append_int(buf, off, cap, v);
}

static void debug_socket(int fd, int domain)
{
	char buf[200];
	size_t n = 0;

	n = append(buf, n, sizeof buf, "libkadiag_keepalive: fd ");
	n = append_int(buf, n, sizeof buf, fd);
	n = append(buf, n, sizeof buf, domain == AF_INET6 ? " AF_INET6" : " AF_INET");
	n = append(buf, n, sizeof buf, " keepalive on");
	n = append_setting(buf, n, sizeof buf, " idle=", cfg.idle);
	n = append_setting(buf, n, sizeof buf, " intvl=", cfg.intvl);
	n = append_setting(buf, n, sizeof buf, " cnt=", cfg.cnt);
	n = append_setting(buf, n, sizeof buf, " user_timeout_ms=", cfg.user_timeout);
	n = append(buf, n, sizeof buf, "\n");
	emit(buf, n);
}

EXPORT int socket(int domain, int type, int protocol)
{
	int fd, saved;

	ready();
	fd = real_socket(domain, type, protocol);
	if (fd < 0 || !cfg.active || !managed(domain, type, protocol))
		return fd;
	saved = errno;
	set_int(fd, SOL_SOCKET, SO_KEEPALIVE, 1);
	set_int(fd, IPPROTO_TCP, TCP_KEEPIDLE, cfg.idle);
	set_int(fd, IPPROTO_TCP, TCP_KEEPINTVL, cfg.intvl);
	set_int(fd, IPPROTO_TCP, TCP_KEEPCNT, cfg.cnt);
	if (protocol != IPPROTO_MPTCP)
		set_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, cfg.user_timeout);
	if (cfg.debug)
		debug_socket(fd, domain);
	errno = saved;
	return fd;
}

/* is_tcp reports whether fd is an IPv4/IPv6 TCP or MPTCP socket, the only kinds managed. */
static int is_tcp(int fd)
{
	int domain = 0, proto = 0;
	socklen_t len = sizeof domain;

	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0)
		return 0;
	if (domain != AF_INET && domain != AF_INET6)
		return 0;
	len = sizeof proto;
	if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len) != 0)
		return 0;
	return proto == IPPROTO_TCP || proto == IPPROTO_MPTCP;
}

/*
 * weaker returns the value to apply instead of v when v asks for less
 * protection than configured (keepalive off, a longer idle or interval, more
 * probes, a longer or disabled user timeout), or UNSET to keep v.
 */
static int weaker(int level, int name, int v)
{
	if (level == SOL_SOCKET && name == SO_KEEPALIVE)
		return v == 0 ? 1 : UNSET;
	if (level != IPPROTO_TCP)
		return UNSET;
	switch (name) {
	case TCP_KEEPIDLE:
		return cfg.idle != UNSET && v > cfg.idle ? cfg.idle : UNSET;
	case TCP_KEEPINTVL:
		return cfg.intvl != UNSET && v > cfg.intvl ? cfg.intvl : UNSET;
	case TCP_KEEPCNT:
		return cfg.cnt != UNSET && v > cfg.cnt ? cfg.cnt : UNSET;
	case TCP_USER_TIMEOUT:
		return cfg.user_timeout != UNSET && (v == 0 || v > cfg.user_timeout) ? cfg.user_timeout
										     : UNSET;
	}
	return UNSET;
}

EXPORT int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	int r, saved, want, asked;

	ready();
	/*
	 * The application's call goes first and unchanged: when the kernel
	 * rejects it (bad fd, bad length, bad pointer, out-of-range value) the
	 * application gets exactly that result and errno. When it succeeded,
	 * val is known to be readable.
	 */
	r = real_setsockopt(fd, level, name, val, len);
	if (r != 0 || !cfg.active || !cfg.enforce || len < (socklen_t)sizeof(int))
		return r;
	if (!(level == SOL_SOCKET && name == SO_KEEPALIVE) &&
	    !(level == IPPROTO_TCP && (name == TCP_KEEPIDLE || name == TCP_KEEPINTVL ||
				       name == TCP_KEEPCNT || name == TCP_USER_TIMEOUT)))
		return r;
	saved = errno;
	memcpy(&asked, val, sizeof asked);
	want = weaker(level, name, asked);
	if (want != UNSET && is_tcp(fd)) {
		real_setsockopt(fd, level, name, &want, sizeof want);
		if (cfg.debug) {
			char buf[160];
			size_t n = 0;

			n = append(buf, n, sizeof buf, "libkadiag_keepalive: fd ");
			n = append_int(buf, n, sizeof buf, fd);
			n = append(buf, n, sizeof buf, " enforced option ");
			n = append_int(buf, n, sizeof buf, name);
			n = append(buf, n, sizeof buf, ": application asked ");
			n = append_int(buf, n, sizeof buf, asked);
			n = append(buf, n, sizeof buf, ", applied ");
			n = append_int(buf, n, sizeof buf, want);
			n = append(buf, n, sizeof buf, "\n");
			emit(buf, n);
		}
	}
	errno = saved;
	return r;
}
