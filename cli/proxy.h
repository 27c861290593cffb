/*
 * noiseshim proxy: the same wire as the shims, for programs that LD_PRELOAD
 * cannot reach.  A client proxy takes plaintext connections and opens a
 * Noise_IK connection to its target for each; a server proxy answers
 * Noise_IK and opens a plaintext connection to its target.
 *
 * One thread, one epoll set (edge-triggered), every socket non-blocking.
 * A connection pair has a plain side and a noise side:
 *
 *   client proxy:  program --plain--> [proxy] --noise--> server
 *   server proxy:  client  --noise--> [proxy] --plain--> target program
 *
 * Each direction moves bytes in batches: several records read, sealed or
 * opened in place, and written in one call, in one bounded buffer that is
 * allocated while the batch exists and freed as soon as it has left; a
 * side is read only while the buffer towards the opposite side is empty,
 * so a slow reader holds its sender back through the kernel's TCP window.
 * A read EOF is passed on as shutdown(SHUT_WR) once the last record has
 * left; the pair closes when both directions are shut.  Any error closes
 * that pair alone, with a reset on both sockets (a peer must not take a
 * failure for the end of the data) and one log line naming the accepted
 * peer's address.
 */
#ifndef NOISESHIM_CLI_PROXY_H
#define NOISESHIM_CLI_PROXY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "frame.h"
#include "noise.h"
#include "proxy_identity.h"

enum proxy_role { PROXY_CLIENT, PROXY_SERVER };

/*
 * Client proxy, first flight.  curl, Go's net/http and python wrote their
 * request 0.4 to 2.8 ms after the accept here (under strace, on a loaded
 * machine), and a request written in two calls shows a gap of tens of
 * microseconds.  Waiting 1 ms after the last byte costs a 50 ms round
 * trip 2% and keeps a two-write request in one SYN; waiting up to 10 ms
 * for a first byte costs only server-speaks-first protocols, once per
 * connection, and spares the others a second round trip when the machine
 * is busy.  Macros, not enum constants: --help prints them.
 */
#define PROXY_DEFAULT_FIRST_QUIET_US 1000
#define PROXY_DEFAULT_FIRST_WAIT_US 10000
#define PROXY_DEFAULT_HANDSHAKE_TIMEOUT_MS 10000

enum {
	/* Longest "address:port" text, IPv6 in brackets. */
	PROXY_ADDR_TEXT_MAX = 64,
	/*
	 * Plaintext per record we send, and records sealed per batch: a batch
	 * is one read from the program and one write to the noise side.  Each
	 * write to a program on the same host wakes it, and it shares our
	 * core: with one write per 32 KiB record the server proxy's target
	 * (iperf3) spent half again as much CPU per byte as with 128 KiB
	 * batches.  Bigger records or batches measured no better.
	 */
	PROXY_RECORD_MAX = 32768,
	PROXY_SEAL_RECORDS = 4,
	/*
	 * Frames read from the noise side at once, opened in place and written
	 * in one call.  Twice the largest frame, so that a frame begun at the
	 * end of one read always fits in the next.
	 */
	PROXY_OPEN_MAX = 2 * (NS_FRAME_HEADER_LEN + NS_MAX_TRANSPORT_BODY),
	/* Free heap the proxy keeps rather than returning it to the kernel between batches. */
	PROXY_HEAP_KEEP = 4 << 20,
	/* Accept queue of the listener, also the TFO queue of a server proxy. */
	PROXY_LISTEN_BACKLOG = 4096,
};

/* What a proxy is told on the command line, resolved. */
struct proxy_config {
	enum proxy_role role;
	struct sockaddr_storage listen_addr;
	socklen_t listen_len;
	struct sockaddr_storage target_addr;
	socklen_t target_len;
	char target_text[PROXY_ADDR_TEXT_MAX];
	unsigned handshake_timeout_ms;

	/* Client proxy: the target's cache entry and our static key. */
	enum ns_suite suite;
	uint8_t remote_pub[NS_KEY_LEN];
	int tfo;
	struct ns_keypair static_key;
	unsigned first_wait_us;   /* no byte from the program by then: msg1 goes empty; and
	                           * msg1 goes at most this long after the first byte */
	unsigned first_quiet_us;  /* no new byte for this long: msg1 goes */

	/* Server proxy. */
	struct proxy_identity *identity;
	int mixed;            /* plaintext clients are relayed as they are */
	int proxy_protocol;   /* PROXY protocol v2 header towards the target */
};

/* A bounded byte queue: data[off..len) is still to be written; data is NULL when empty. */
struct proxy_buf {
	uint8_t *data;
	size_t off, len;
};

/*
 * Frames read from the noise side: data[0..opened) holds whole frames,
 * opened in place, and data[opened..have) the start of the next.  What is
 * still to be written is the plaintext (between header and tag) of the
 * frames from offset frame on, less the first skip bytes of that one.
 * data is NULL when nothing is held.
 */
struct proxy_frames {
	uint8_t *data;
	size_t have, opened, frame, skip;
};

struct proxy_pair;

/* One socket of a pair (or the listener, with pair NULL). */
struct proxy_side {
	int fd;
	struct proxy_pair *pair;
	const char *name;       /* for logs: "client", "target", "program" */
	unsigned readable : 1;  /* edge seen, not yet drained */
	unsigned writable : 1;
	unsigned connecting : 1;
	unsigned hup : 1;       /* the peer's FIN (or an error) is queued behind the data */
	unsigned eof : 1;       /* read EOF seen */
	unsigned shut : 1;      /* we sent our FIN */
};

enum proxy_phase {
	PHASE_FIRST_FLIGHT,  /* client: gathering the program's first bytes */
	PHASE_WAIT_MSG2,     /* client: msg1 sent */
	PHASE_WAIT_MSG1,     /* server: route prefix and msg1 */
	PHASE_RELAY,
};

struct proxy_loop;

struct proxy_pair {
	struct proxy_loop *loop;
	const struct proxy_config *cfg;
	struct proxy_side plain, noise;
	enum proxy_phase phase;
	int passthrough;       /* mixed mode: a plaintext client, relayed as is */
	int dead;              /* closed; freed after the current batch of events */

	struct ns_handshake *hs;
	struct ns_cipher *tx, *rx;
	struct ns_frame_reader reader;
	uint8_t *rx_body;      /* the handshake reader's body buffer, sized by the frame header */

	struct proxy_buf to_noise, to_plain;  /* to_plain: handshake payloads, passthrough bytes */
	struct proxy_frames opened;           /* records towards the plain side */

	/* Client: the first flight being gathered. */
	uint8_t *flight;
	size_t flight_len;
	uint64_t flight_due_us;
	uint64_t flight_last_us;  /* msg1 goes by then whatever the program keeps writing */

	/* Server: the route prefix read so far. */
	uint8_t prefix[NS_ROUTE_PREFIX_LEN];
	size_t prefix_have;

	uint64_t deadline_us;  /* handshake deadline; the pair is pending until settled */
	struct proxy_pair *prev, *next;  /* pending list, or the list of dead pairs */

	struct sockaddr_storage peer_addr;   /* of the accepted socket */
	struct sockaddr_storage local_addr;  /* its own address, asked for only with --proxy-protocol */
	char peer[PROXY_ADDR_TEXT_MAX];
};

/* Run the proxy described by cfg until a fatal error; returns the exit code. */
int proxy_run(const struct proxy_config *cfg);

/* Monotonic clock in microseconds. */
uint64_t proxy_now_us(void);

/* Log "noiseshim proxy: PEER: why" and close the pair.  Always returns -1. */
int proxy_fail(struct proxy_pair *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A non-blocking TCP socket connecting to the target (TFO deferred if tfo).  0 or -1 logged. */
int proxy_connect_target(struct proxy_pair *p, int tfo);

/*
 * A read got less than it asked for, so it emptied the socket and the next
 * arrival brings a new edge: no need to read again until then.  A FIN
 * already queued brings none, so after one the side is read until EOF.
 */
void proxy_side_drained(struct proxy_side *s);

/* Write what b holds to s.  >0 progress, 0 none, -1 closed. */
int proxy_flush(struct proxy_pair *p, struct proxy_side *s, struct proxy_buf *b);

/* Read a handshake frame from the noise side. */
enum proxy_frame { FRAME_AGAIN, FRAME_READY, FRAME_EOF, FRAME_ERROR };
enum proxy_frame proxy_read_frame(struct proxy_pair *p, size_t *len);

/* Hand the ready frame's buffer over (the reader starts on the next frame). */
uint8_t *proxy_take_frame(struct proxy_pair *p);

/* Both relay directions once the handshake is done.  >0 progress, 0 none, -1 closed. */
int proxy_relay_step(struct proxy_pair *p);

/* Client role: start a pair, advance its handshake, fire its timer. */
int proxy_client_start(struct proxy_pair *p);
int proxy_client_step(struct proxy_pair *p);
int proxy_client_timer(struct proxy_pair *p);

/* Server role: advance the handshake of a pair. */
int proxy_server_step(struct proxy_pair *p);

/* Format a socket address as "a.b.c.d:port" or "[v6]:port". */
void proxy_addr_text(const struct sockaddr *sa, char *out, size_t cap);

#endif
