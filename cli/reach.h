/*
 * Whether LD_PRELOAD reaches a program: ld.so must load it, outside secure
 * execution, and the program must make its socket calls through libc.
 */
#ifndef NOISESHIM_CLI_REACH_H
#define NOISESHIM_CLI_REACH_H

#include <stddef.h>

enum reach_verdict {
	REACH_OK,      /* a dynamically linked program that ld.so preloads into */
	REACH_UNKNOWN, /* noiseshim cannot tell (say, the file is unreadable) */
	REACH_REFUSED, /* it would run, but LD_PRELOAD would not reach it */
	REACH_NO_RUN,  /* it would not run at all: missing, not executable... */
};

/*
 * Judge program as execvp would run it: found through PATH, and through
 * the interpreters of #! scripts (including /usr/bin/env's program) down to
 * the ELF file that runs.  why gets one explanation naming the file at fault.
 */
enum reach_verdict reach_check(const char *program, char *why, size_t cap);

#endif
