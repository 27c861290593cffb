/*
 * Real libc functions, bound once.
 */
#include "real.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

struct ns_real ns_real;

/* Resolve every real function; safe to call more than once.  Aborts if one is missing. */
void
ns_real_init(void)
{
	struct ns_real found;

	/* Resolve into a local copy first: threads may race here, and each must see whole pointers. */
#define NS_REAL_RESOLVE(name, ret, params)                                                   \
	found.name = (ret(*) params)dlsym(RTLD_NEXT, #name);                                 \
	if (found.name == NULL) {                                                            \
		static const char msg[] = "noiseshim: cannot find libc function " #name "\n";     \
		/* Not write(): that is our own wrapper, which needs this table. */          \
		(void)!syscall(SYS_write, STDERR_FILENO, msg, sizeof(msg) - 1);              \
		abort();                                                                     \
	}
	NS_REAL_FUNCTIONS(NS_REAL_RESOLVE)
#undef NS_REAL_RESOLVE
#define NS_REAL_STORE(name, ret, params) __atomic_store_n(&ns_real.name, found.name, __ATOMIC_RELEASE);
	NS_REAL_FUNCTIONS(NS_REAL_STORE)
#undef NS_REAL_STORE
}
