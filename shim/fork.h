/*
 * Connection ownership across fork.
 */
#ifndef NOISESHIM_FORK_H
#define NOISESHIM_FORK_H

struct ns_conn;

/* Register the fork handlers (once, from the constructor). */
void ns_fork_init(void);

/* The connection no longer needs its ownership word (it is being freed or given a new one). */
void ns_owner_release(struct ns_conn *c);

#endif
