/*
 * exec and posix_spawn.  A wrapped socket that survives into a new program
 * image keeps its Noise state only if that image loads the shim too: the
 * exec'ing process then names the arena and the objects in the new image's
 * environment (NOISESHIM_INHERIT), and the new image adopts every fd whose
 * socket is one of them, whatever its number.  An image that cannot adopt
 * (LD_PRELOAD removed from its environment, a static or setuid binary)
 * never gets a wrapped socket it could write plaintext to: in an exec
 * every such fd is first replaced by an unconnected socket, which only
 * returns errors; a spawn that would hand one over is refused.
 *
 *   NOISESHIM_INHERIT=ARENAFD:OFF.GEN.DROP,OFF.GEN.DROP,...
 *
 * DROP is how many references the new image gives back once it holds its
 * own: the pin taken for the hand-over, plus, after an exec, the table
 * references of the image that went away.
 */
#include "exec.h"

#include <dirent.h>
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "birth.h"
#include "conn.h"
#include "fdtable.h"
#include "log.h"
#include "real.h"
#include "service.h"
#include "shim.h"
#include "stdio_streams.h"

extern char **environ;

enum { MAX_HANDED = 4096, ITEM_TEXT = 40, SCRIPT_DEPTH = 4 };

/* What an exec hands over: each object once, with how many table entries this image has for it. */
struct handover {
	struct ns_conn *conn[MAX_HANDED];
	unsigned entries[MAX_HANDED];
	int survives[MAX_HANDED];       /* some fd of it stays open across the exec */
	size_t count;
	int overflow;
};

/* What an exec that fails must take back. */
struct exec_token {
	char **env;
	int arena_fd;
	const struct handover *handover;
	int stopped;                    /* the service thread was stopped */
};


static size_t
find(struct handover *h, struct ns_conn *c)
{
	size_t i;

	for (i = 0; i < h->count; i++)
		if (h->conn[i] == c)
			return i;
	if (h->count == MAX_HANDED) {
		h->overflow = 1;
		return MAX_HANDED;
	}
	h->conn[i] = c;
	h->entries[i] = 0;
	h->survives[i] = 0;
	h->count++;
	return i;
}

static int
survives_exec(int fd)
{
	int fl = REAL(fcntl)(fd, F_GETFD);

	return fl >= 0 && !(fl & FD_CLOEXEC);
}

static void
promote_survivor(int fd, uint64_t entry, void *ctx)
{
	if (entry == NS_FD_FRESH && survives_exec(fd))
		ns_fd_promote(fd);
}

static void
collect(int fd, uint64_t entry, void *ctx)
{
	struct handover *h = ctx;
	size_t i;

	if (entry <= NS_FD_FRESH)
		return;
	if ((i = find(h, ns_fd_entry_conn(entry))) == MAX_HANDED)
		return;
	h->entries[i]++;
	if (survives_exec(fd))
		h->survives[i] = 1;
}

/* The objects this image holds: fresh survivors become objects first, so the new image can find them. */
static void
gather(struct handover *h)
{
	h->count = 0;
	h->overflow = 0;
	for (int fd = ns_fd_next_in_use(0); fd >= 0; fd = ns_fd_next_in_use(fd + 1))
		promote_survivor(fd, ns_fd_entry(fd), NULL);
	ns_fd_lock();
	ns_fd_foreach(collect, h);
	ns_fd_unlock();
}

static int
any_survivor(const struct handover *h)
{
	for (size_t i = 0; i < h->count; i++)
		if (h->survives[i])
			return 1;
	return 0;
}

/* The file name of this shim, as the dynamic loader has it. */
static const char *
own_name(void)
{
	static Dl_info info;

	if (info.dli_fname == NULL && dladdr((void *)ns_exec_adopt, &info) == 0)
		return NULL;
	const char *slash = strrchr(info.dli_fname, '/');
	return slash != NULL ? slash + 1 : info.dli_fname;
}

/* Whether an LD_PRELOAD value names this shim. */
static int
preloads_us(const char *value)
{
	const char *me = own_name();
	size_t n;

	if (me == NULL || value == NULL)
		return 0;
	n = strlen(me);
	for (const char *p = value; (p = strstr(p, me)) != NULL; p += n)
		if ((p == value || p[-1] == '/' || p[-1] == ':' || p[-1] == ' ') &&
		    (p[n] == '\0' || p[n] == ':' || p[n] == ' '))
			return 1;
	return 0;
}

static const char *
env_value(char *const envp[], const char *name)
{
	size_t n = strlen(name);

	for (size_t i = 0; envp != NULL && envp[i] != NULL; i++)
		if (strncmp(envp[i], name, n) == 0 && envp[i][n] == '=')
			return envp[i] + n + 1;
	return NULL;
}

/*
 * Whether the loader will run the shim in the image at path: a dynamic
 * ELF without set-id bits or file capabilities (those run in secure mode,
 * which ignores LD_PRELOAD), or a script whose interpreter is one.  why
 * gets the reason when not.
 */
static int
loads_shim(const char *path, char *why, size_t cap, int depth)
{
	unsigned char buf[4096];
	struct stat st;
	Elf64_Ehdr eh;
	ssize_t n;
	int fd, dynamic = 0;

	if ((fd = REAL(open)(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) != 0) {
		snprintf(why, cap, "%s cannot be read", path);
		if (fd >= 0)
			REAL(close)(fd);
		return 0;
	}
	if (st.st_mode & (S_ISUID | S_ISGID) || fgetxattr(fd, "security.capability", NULL, 0) > 0) {
		snprintf(why, cap, "%s is set-id or has file capabilities", path);
		goto no;
	}
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (n >= 2 && buf[0] == '#' && buf[1] == '!' && depth < SCRIPT_DEPTH) {
		char *interp = (char *)buf + 2, *end;
		buf[n] = '\0';
		interp += strspn(interp, " \t");
		end = interp + strcspn(interp, " \t\n");
		*end = '\0';
		REAL(close)(fd);
		return loads_shim(interp, why, cap, depth + 1);
	}
	if (n < (ssize_t)sizeof(eh) || memcmp(buf, ELFMAG, SELFMAG) != 0 ||
	    buf[EI_CLASS] != ELFCLASS64) {
		snprintf(why, cap, "%s is not a 64-bit ELF program", path);
		goto no;
	}
	memcpy(&eh, buf, sizeof(eh));
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;
		if (pread(fd, &ph, sizeof(ph), (off_t)(eh.e_phoff + (uint64_t)i * eh.e_phentsize)) !=
		    (ssize_t)sizeof(ph))
			break;
		if (ph.p_type == PT_INTERP)
			dynamic = 1;
	}
	if (!dynamic) {
		snprintf(why, cap, "%s is statically linked", path);
		goto no;
	}
	REAL(close)(fd);
	return 1;
no:
	REAL(close)(fd);
	return 0;
}

/* Whether a new image at path with environment envp adopts wrapped sockets; why gets the reason if not. */
static int
can_adopt(const char *path, char *const envp[], char *why, size_t cap)
{
	if (!preloads_us(env_value(envp, "LD_PRELOAD"))) {
		snprintf(why, cap, "LD_PRELOAD in its environment does not load %s", own_name());
		return 0;
	}
	return loads_shim(path, why, cap, 0);
}

/*
 * envp without any NOISESHIM_INHERIT, plus one naming the arena (fd
 * arena_fd) and every object of h that survives; drop as described at the
 * top (exec: own table references too).  NULL with errno on failure.
 */
static char **
handover_env(char *const envp[], const struct handover *h, int arena_fd, int exec)
{
	size_t n = 0, k = 0, len;
	char **out, *var;

	while (envp != NULL && envp[n] != NULL)
		n++;
	len = sizeof(NS_INHERIT_VAR "=") + 16 + h->count * ITEM_TEXT;
	if ((out = calloc(n + 2, sizeof(*out))) == NULL || (var = malloc(len)) == NULL) {
		free(out);
		errno = ENOMEM;
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		if (strncmp(envp[i], NS_INHERIT_VAR "=", sizeof(NS_INHERIT_VAR)) != 0)
			out[k++] = envp[i];
	size_t at = (size_t)snprintf(var, len, NS_INHERIT_VAR "=%d:", arena_fd);
	const char *sep = "";
	for (size_t i = 0; i < h->count; i++) {
		ns_off off = ns_arena_off(h->conn[i]);
		unsigned drop = (h->survives[i] ? 1u : 0u) + (exec ? h->entries[i] : 0u);
		if (drop == 0)
			continue;
		at += (size_t)snprintf(var + at, len - at, "%s%u.%u.%u", sep, off, ns_arena_slot_gen(off),
		                       drop);
		sep = ",";
	}
	out[k++] = var;
	out[k] = NULL;
	return out;
}

static void
free_env(char **env)
{
	if (env == NULL)
		return;
	for (size_t i = 0; env[i] != NULL; i++)
		if (strncmp(env[i], NS_INHERIT_VAR "=", sizeof(NS_INHERIT_VAR)) == 0)
			free(env[i]);
	free(env);
}

/* Pin (or unpin) every surviving object for the hand-over. */
static void
pin(const struct handover *h, int on)
{
	for (size_t i = 0; i < h->count; i++)
		if (h->survives[i]) {
			if (on)
				ns_conn_ref(h->conn[i]);
			else
				ns_conn_unref(h->conn[i]);
		}
}

/* Replace fd by an unconnected socket of the same family: every call on it fails. */
static void
replace_with_dead(int fd, const char *path, const char *why)
{
	struct ns_conn *c = ns_fd_get(fd);

	ns_log(NS_LOG_ERROR, "fd %d%s%s: cut off before exec of %s: %s", fd, c != NULL ? ", " : "",
	       c != NULL ? c->peer : "", path, why);
	ns_conn_unref(c);
	ns_fd_make_dead(fd);
}

static void
cut_off(int fd, uint64_t entry, void *ctx)
{
	char **what = ctx;

	if (entry > NS_FD_FRESH && survives_exec(fd) &&
	    __atomic_load_n(&ns_fd_entry_conn(entry)->kind, __ATOMIC_ACQUIRE) == NS_SOCK_WRAPPED)
		replace_with_dead(fd, what[0], what[1]);
}

/* The exec cannot adopt: no wrapped fd may reach it, and this image's references go with it. */
static void
cut_off_all(const char *path, const char *why)
{
	const char *what[2] = {path, why};
	int fds[MAX_HANDED];
	size_t n = 0;

	/* Collect first: replacing an fd changes the table. */
	ns_fd_lock();
	for (int fd = ns_fd_next_in_use(0); fd >= 0 && n < MAX_HANDED; fd = ns_fd_next_in_use(fd + 1))
		fds[n++] = fd;
	ns_fd_unlock();
	for (size_t i = 0; i < n; i++)
		cut_off(fds[i], ns_fd_entry(fds[i]), (void *)what);
}

/* First flights still being gathered leave before the exec, with what they gathered. */
static void
release_gathered(void)
{
	for (int fd = ns_fd_next_in_use(0); fd >= 0; fd = ns_fd_next_in_use(fd + 1)) {
		struct ns_conn *c = ns_fd_entry(fd) > NS_FD_FRESH ? ns_fd_wrapped(fd) : NULL;

		if (c == NULL)
			continue;
		if (ns_conn_phase(c) == NS_PHASE_START && c->early_len > 0)
			ns_conn_release_unlocked(c, fd);
		ns_conn_unref(c);
	}
}

/*
 * Before an exec of path with envp: returns the environment to use (envp
 * itself, or a copy with NOISESHIM_INHERIT); *token gets what ns_exec_undo
 * needs if the exec fails.
 */
static char *const *
before_exec(const char *path, char *const envp[], struct exec_token *token)
{
	static struct handover h;   /* an exec leaves only one thread running anyway */
	char why[PATH_MAX + 96];
	char **env;
	int fd;

	token->env = NULL;
	token->arena_fd = -1;
	token->handover = NULL;
	token->stopped = 0;
	if (!ns_arena_ready())
		return envp;
	/*
	 * The service thread dies with this image: it must hold no connection
	 * lock when that happens, and what it would still have sent goes now.
	 */
	ns_service_stop();
	token->stopped = 1;
	release_gathered();
	gather(&h);
	if (h.count == 0)
		return envp;
	if (!any_survivor(&h) || h.overflow || !can_adopt(path, envp, why, sizeof(why))) {
		if (h.overflow)
			snprintf(why, sizeof(why), "more than %d wrapped sockets", MAX_HANDED);
		if (any_survivor(&h))
			cut_off_all(path, why);
		return envp;
	}
	/* The arena's fd is spared by every close wrapper; only its close-on-exec flag changes. */
	if ((fd = ns_arena_fd()) < 0 || REAL(fcntl)(fd, F_SETFD, 0) != 0 ||
	    (env = handover_env(envp, &h, fd, 1)) == NULL) {
		snprintf(why, sizeof(why), "no fd or memory to hand the connection state over");
		if (fd >= 0)
			REAL(fcntl)(fd, F_SETFD, FD_CLOEXEC);
		cut_off_all(path, why);
		return envp;
	}
	pin(&h, 1);
	token->env = env;
	token->arena_fd = fd;
	token->handover = &h;
	return env;
}

/* The exec failed: take the hand-over back. */
static void
exec_undo(struct exec_token *token)
{
	int saved = errno;

	if (token->handover != NULL)
		pin(token->handover, 0);
	if (token->arena_fd >= 0)
		REAL(fcntl)(token->arena_fd, F_SETFD, FD_CLOEXEC);
	free_env(token->env);
	if (token->stopped)
		ns_service_resume();
	errno = saved;
}

static int
do_execve(const char *path, char *const argv[], char *const envp[])
{
	struct exec_token token;
	char *const *env = before_exec(path, envp, &token);

	REAL(execve)(path, argv, env);
	exec_undo(&token);
	return -1;
}

NS_EXPORT int
execve(const char *path, char *const argv[], char *const envp[])
{
	return do_execve(path, argv, envp);
}

NS_EXPORT int
execv(const char *path, char *const argv[])
{
	return do_execve(path, argv, environ);
}

/* The file execvp would run for file: searched in PATH unless it has a slash.  0, or -1. */
static int
search_path(const char *file, char *out, size_t cap)
{
	const char *path = getenv("PATH");

	if (strchr(file, '/') != NULL) {
		snprintf(out, cap, "%s", file);
		return 0;
	}
	if (path == NULL)
		path = "/bin:/usr/bin";
	for (const char *p = path; *p != '\0';) {
		size_t n = strcspn(p, ":");
		snprintf(out, cap, "%.*s%s%s", (int)n, p, n > 0 ? "/" : "", file);
		if (access(out, X_OK) == 0)
			return 0;
		p += n + (p[n] == ':');
	}
	errno = ENOENT;
	return -1;
}

static int
do_execvpe(const char *file, char *const argv[], char *const envp[])
{
	char path[PATH_MAX];

	if (search_path(file, path, sizeof(path)) != 0)
		return -1;
	return do_execve(path, argv, envp);
}

NS_EXPORT int
execvp(const char *file, char *const argv[])
{
	return do_execvpe(file, argv, environ);
}

NS_EXPORT int
execvpe(const char *file, char *const argv[], char *const envp[])
{
	return do_execvpe(file, argv, envp);
}

NS_EXPORT int
fexecve(int fd, char *const argv[], char *const envp[])
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	return do_execve(path, argv, envp);
}

/*
 * execveat: the file it runs, named as a path the checks can open, is the
 * one before_exec decides on; the call itself stays the program's.
 */
NS_EXPORT int
execveat(int dirfd, const char *pathname, char *const argv[], char *const envp[], int flags)
{
	struct exec_token token;
	char path[PATH_MAX];
	char *const *env;

	if ((flags & AT_EMPTY_PATH) && pathname[0] == '\0')
		snprintf(path, sizeof(path), "/proc/self/fd/%d", dirfd);
	else if (pathname[0] == '/' || dirfd == AT_FDCWD)
		snprintf(path, sizeof(path), "%s", pathname);
	else
		snprintf(path, sizeof(path), "/proc/self/fd/%d/%s", dirfd, pathname);
	env = before_exec(path, envp, &token);
	REAL(execveat)(dirfd, pathname, argv, env, flags);
	exec_undo(&token);
	return -1;
}

/* The argument list of execl and friends, as an argv array on the heap. */
static char **
list_args(const char *arg0, va_list ap, char ***envp)
{
	va_list count;
	size_t n = 1;
	char **argv;

	va_copy(count, ap);
	while (va_arg(count, char *) != NULL)
		n++;
	va_end(count);
	if ((argv = calloc(n + 1, sizeof(*argv))) == NULL)
		return NULL;
	argv[0] = (char *)arg0;
	for (size_t i = 1; i < n; i++)
		argv[i] = va_arg(ap, char *);
	(void)va_arg(ap, char *);  /* the terminating NULL */
	if (envp != NULL)
		*envp = va_arg(ap, char **);
	return argv;
}

/* The end of execl and friends: exec argv (from list_args), which is freed if that fails. */
static int
exec_list(int (*exec)(const char *, char *const[], char *const[]), const char *file,
          char **argv, char *const envp[])
{
	if (argv == NULL)
		return -1;
	exec(file, argv, envp);
	free(argv);
	return -1;
}

NS_EXPORT int
execl(const char *path, const char *arg0, ...)
{
	va_list ap;
	char **argv;

	va_start(ap, arg0);
	argv = list_args(arg0, ap, NULL);
	va_end(ap);
	return exec_list(do_execve, path, argv, environ);
}

NS_EXPORT int
execlp(const char *file, const char *arg0, ...)
{
	va_list ap;
	char **argv;

	va_start(ap, arg0);
	argv = list_args(arg0, ap, NULL);
	va_end(ap);
	return exec_list(do_execvpe, file, argv, environ);
}

NS_EXPORT int
execle(const char *path, const char *arg0, ...)
{
	va_list ap;
	char **argv, **envp = NULL;

	va_start(ap, arg0);
	argv = list_args(arg0, ap, &envp);
	va_end(ap);
	return exec_list(do_execve, path, argv, envp);
}

/*
 * A spawned child that cannot adopt gets, in place of each wrapped fd it
 * would inherit, an unconnected socket: the same file actions an exec's
 * replacement does, done by posix_spawn in the child.  0, or an errno.
 */
static int
dead_socket_actions(posix_spawn_file_actions_t *fa, int *dead, size_t *ndead, const char *path,
                    const char *why)
{
	size_t n = 0;

	*ndead = 0;
	posix_spawn_file_actions_init(fa);
	for (int fd = ns_fd_next_in_use(0); fd >= 0; fd = ns_fd_next_in_use(fd + 1)) {
		struct ns_conn *c = ns_fd_wrapped(fd);
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int family;

		if (c == NULL)
			continue;
		if (survives_exec(fd) && n < MAX_HANDED) {
			family = getsockname(fd, (struct sockaddr *)&ss, &len) == 0 ? ss.ss_family : AF_INET;
			if ((dead[n] = REAL(socket)(family, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
			    posix_spawn_file_actions_adddup2(fa, dead[n], fd) != 0) {
				ns_conn_unref(c);
				*ndead = n + (dead[n] >= 0);
				return ENOMEM;
			}
			ns_log(NS_LOG_ERROR, "fd %d, %s: cut off in the spawned %s: %s", fd, c->peer, path,
			       why);
			n++;
		}
		ns_conn_unref(c);
	}
	*ndead = n;
	return 0;
}

/*
 * posix_spawn: the child is a new process, so the parent keeps its share;
 * the child gets the pins.  A child that cannot adopt must not get a
 * wrapped socket: without file actions of the program's, the spawn puts
 * dead sockets in their place; with them, the shim cannot see what they
 * will dup, so the spawn is refused.
 */
static int
do_spawn(int search, pid_t *pid, const char *file, const posix_spawn_file_actions_t *actions,
         const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	static pthread_mutex_t spawn_lock = PTHREAD_MUTEX_INITIALIZER;
	static struct handover h;
	static int dead[MAX_HANDED];
	char path[PATH_MAX], why[PATH_MAX + 96];
	posix_spawn_file_actions_t own;
	size_t ndead = 0;
	char **env = NULL;
	int fd = -1, ret, wrapped_any = 0;

	if (!ns_arena_ready())
		goto plain;
	pthread_mutex_lock(&spawn_lock);
	gather(&h);
	for (size_t i = 0; i < h.count; i++)
		wrapped_any |= h.conn[i]->kind == NS_SOCK_WRAPPED;
	if (!wrapped_any || (!any_survivor(&h) && actions == NULL)) {
		pthread_mutex_unlock(&spawn_lock);
		goto plain;
	}
	if (search ? search_path(file, path, sizeof(path)) != 0
	           : snprintf(path, sizeof(path), "%s", file) < 0) {
		pthread_mutex_unlock(&spawn_lock);
		return errno;
	}
	if (h.overflow || !can_adopt(path, envp, why, sizeof(why))) {
		if (h.overflow)
			snprintf(why, sizeof(why), "more than %d wrapped sockets", MAX_HANDED);
		if (actions != NULL) {
			pthread_mutex_unlock(&spawn_lock);
			ns_log(NS_LOG_ERROR, "spawn of %s refused: it could inherit a wrapped connection "
			       "through its file actions, and %s", file, why);
			return EACCES;
		}
		if ((ret = dead_socket_actions(&own, dead, &ndead, path, why)) == 0)
			ret = search ? REAL(posix_spawnp)(pid, file, &own, attr, argv, envp)
			             : REAL(posix_spawn)(pid, file, &own, attr, argv, envp);
		posix_spawn_file_actions_destroy(&own);
		for (size_t i = 0; i < ndead; i++)
			REAL(close)(dead[i]);
		pthread_mutex_unlock(&spawn_lock);
		return ret;
	}
	/* Every object, surviving or not: the file actions may dup any of them. */
	for (size_t i = 0; i < h.count; i++)
		h.survives[i] = 1;
	/* The child inherits a copy of the arena's fd; the parent's own stays close-on-exec. */
	if ((fd = REAL(fcntl)(ns_arena_fd(), F_DUPFD, 3)) < 0) {
		pthread_mutex_unlock(&spawn_lock);
		return EMFILE;
	}
	if ((env = handover_env(envp, &h, fd, 0)) == NULL) {
		pthread_mutex_unlock(&spawn_lock);
		REAL(close)(fd);
		return ENOMEM;
	}
	pin(&h, 1);
	ret = search ? REAL(posix_spawnp)(pid, file, actions, attr, argv, env)
	             : REAL(posix_spawn)(pid, file, actions, attr, argv, env);
	if (ret != 0)
		pin(&h, 0);
	pthread_mutex_unlock(&spawn_lock);
	REAL(close)(fd);
	free_env(env);
	return ret;
plain:
	return search ? REAL(posix_spawnp)(pid, file, actions, attr, argv, envp)
	              : REAL(posix_spawn)(pid, file, actions, attr, argv, envp);
}

NS_EXPORT int
posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *actions,
            const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	return do_spawn(0, pid, path, actions, attr, argv, envp);
}

NS_EXPORT int
posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *actions,
             const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	return do_spawn(1, pid, file, actions, attr, argv, envp);
}

/*
 * system() and popen() start /bin/sh through libc's own spawn, past every
 * exec wrapper, so the shell would inherit wrapped sockets it knows nothing
 * of.  For the length of the call they are close-on-exec: a shell command
 * cannot write plaintext onto a wrapped connection.  Calls may overlap, so
 * the flags come back when the last one ends.
 */
static struct {
	pthread_mutex_t lock;           /* guards the fields below */
	int depth;                      /* calls under way */
	int fds[MAX_HANDED];            /* the fds this hid */
	size_t count;
} hidden = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void
hide_wrapped(void)
{
	pthread_mutex_lock(&hidden.lock);
	if (hidden.depth++ == 0) {
		hidden.count = 0;
		for (int fd = ns_fd_next_in_use(0); fd >= 0 && hidden.count < MAX_HANDED;
		     fd = ns_fd_next_in_use(fd + 1)) {
			struct ns_conn *c = ns_fd_wrapped(fd);

			if (c != NULL && survives_exec(fd) && REAL(fcntl)(fd, F_SETFD, FD_CLOEXEC) == 0)
				hidden.fds[hidden.count++] = fd;
			ns_conn_unref(c);
		}
	}
	pthread_mutex_unlock(&hidden.lock);
}

static void
unhide_wrapped(void)
{
	int saved = errno;

	pthread_mutex_lock(&hidden.lock);
	if (--hidden.depth == 0)
		for (size_t i = 0; i < hidden.count; i++)
			REAL(fcntl)(hidden.fds[i], F_SETFD, 0);
	pthread_mutex_unlock(&hidden.lock);
	errno = saved;
}

NS_EXPORT int
system(const char *command)
{
	int ret;

	hide_wrapped();
	ret = REAL(system)(command);
	unhide_wrapped();
	return ret;
}

NS_EXPORT FILE *
popen(const char *command, const char *type)
{
	FILE *f;

	hide_wrapped();
	f = REAL(popen)(command, type);
	unhide_wrapped();
	return f;
}

/* One NOISESHIM_INHERIT item. */
struct inherited {
	struct ns_conn *conn;
	unsigned drop;
};

/* An inherited socket this image cannot take over: it must not carry plaintext. */
static void
kill_socket_fds(const char *why)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;

	ns_log(NS_LOG_ERROR, "inherited wrapped connections cut off: %s", why);
	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		struct stat st;
		int fd, type = 0;
		socklen_t tlen = sizeof(type);

		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		fd = atoi(de->d_name);
		if (fd == dirfd(d) || fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode) ||
		    REAL(getsockopt)(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) != 0 || type != SOCK_STREAM ||
		    getsockname(fd, (struct sockaddr *)&ss, &len) != 0 ||
		    (ss.ss_family != AF_INET && ss.ss_family != AF_INET6))
			continue;
		replace_with_dead(fd, "this program", why);
	}
	closedir(d);
}

/* Attach every open fd whose socket is one of items. */
static void
attach_fds(struct inherited *items, size_t n)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		struct stat st;
		int fd;

		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		fd = atoi(de->d_name);
		if (fd == dirfd(d) || fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode))
			continue;
		for (size_t i = 0; i < n; i++)
			if (items[i].conn->ino == (uint64_t)st.st_ino) {
				ns_fd_attach(fd, items[i].conn);
				break;
			}
	}
	closedir(d);
}

/* At start-up: take over the sockets an exec'ing process handed to this image. */
void
ns_exec_adopt(void)
{
	static struct inherited items[MAX_HANDED];
	const char *var = getenv(NS_INHERIT_VAR);
	char *end;
	size_t n = 0;
	long fd;

	if (var == NULL)
		return;
	fd = strtol(var, &end, 10);
	if (end == var || *end != ':' || fd < 0 || fd > INT_MAX || ns_arena_adopt((int)fd) != 0) {
		kill_socket_fds("the connection state handed over cannot be read");
		goto out;
	}
	for (const char *p = end + 1; *p != '\0' && n < MAX_HANDED;) {
		unsigned long off = strtoul(p, &end, 10), gen, drop;
		if (*end != '.')
			break;
		gen = strtoul(end + 1, &end, 10);
		if (*end != '.')
			break;
		drop = strtoul(end + 1, &end, 10);
		/* A pinned object cannot have gone; a mismatch means the variable is not ours to trust. */
		if (off > UINT32_MAX || !ns_arena_is_slot((ns_off)off) ||
		    ns_arena_slot_gen((ns_off)off) != gen)
			break;
		items[n].conn = ns_conn_at((ns_off)off);
		items[n].drop = (unsigned)drop;
		n++;
		p = *end == ',' ? end + 1 : end;
	}
	attach_fds(items, n);
	for (size_t i = 0; i < n; i++) {
		if (items[i].conn->kind == NS_SOCK_WRAPPED && ns_conn_phase(items[i].conn) == NS_PHASE_START)
			__atomic_add_fetch(&ns_conn_unstarted, 1, __ATOMIC_RELAXED);
		if (items[i].conn->kind == NS_SOCK_WRAPPED && ns_conn_phase(items[i].conn) == NS_PHASE_MSG2_DUE)
			__atomic_add_fetch(&ns_conn_msg2_due, 1, __ATOMIC_RELAXED);
		while (items[i].drop-- > 0)
			ns_conn_unref(items[i].conn);
	}
	for (int std = 0; std <= 2; std++)
		ns_stdio_refresh(std);
out:
	unsetenv(NS_INHERIT_VAR);
}
