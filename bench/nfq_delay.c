/*
 * nfq_delay: a fixed-delay line for one NFQUEUE queue.
 *
 *   nfq_delay --queue N --delay-ms D
 *
 * Every packet the kernel queues on N is held for D milliseconds, counted
 * from the moment its notification is read, and then accepted.  It stands
 * in for netem's delay on kernels built without netem: netns.sh runs one
 * per network namespace.
 *
 * The packets themselves stay in the kernel.  The program only reads each
 * packet's id (copy mode "meta", no payload), stamps its due time into a
 * FIFO ring, and sleeps in ppoll() until the oldest one is due or more
 * notifications arrive, so the queue keeps filling while packets are held.
 * The delay is the same for every packet, so due times rise with arrival
 * order and the ring's head is always the next packet due.  Due packets
 * leave with one batch verdict for the newest due id, which the kernel
 * applies to every queued id up to it, oldest first: order is preserved.
 */
/* For ppoll().  Defined as 1, the value a -D_GNU_SOURCE would give it. */
#define _GNU_SOURCE 1
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>

#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <libnetfilter_queue/libnetfilter_queue.h>

enum {
	/*
	 * The kernel queue must hold a whole delay's worth of packets, or it
	 * drops them itself (without fail-open, see configure_queue).  65536
	 * held packets cover 2.6 million packets per second at 25 ms, far
	 * beyond what two namespaces on this kind of machine exchange.  The
	 * ring has the same capacity: it fills only when the kernel queue is
	 * full too, or while it still holds ids of packets the kernel let go
	 * by itself (their interface went down).
	 */
	QUEUE_MAXLEN = 65536,
	/* Room for a burst of notifications while the program sleeps. */
	RECEIVE_BUFFER_BYTES = 16 * 1024 * 1024,
	/* One netlink datagram; meta-only packet messages are a few hundred bytes. */
	DATAGRAM_BYTES = 64 * 1024,
	/* A request to the kernel: the configuration, the largest, needs 64. */
	REQUEST_BYTES = 256,
	/*
	 * Datagrams read before due packets are released again, so a flood
	 * of arrivals cannot hold back packets whose time has come.
	 */
	DATAGRAMS_PER_ROUND = 64,
	MAX_DELAY_MS = 60 * 1000,
};

_Static_assert((QUEUE_MAXLEN & (QUEUE_MAXLEN - 1)) == 0, "the ring indexes by mask");

struct held_packet {
	uint32_t id;
	uint64_t due_ns;
};

/* FIFO of held packets; capacity is a power of two. */
struct delay_line {
	struct held_packet *slots;
	uint32_t capacity;
	uint32_t head;
	uint32_t count;
};

struct delayer {
	struct mnl_socket *nl;
	uint32_t portid;
	uint16_t queue;
	uint64_t delay_ns;
	struct delay_line line;
	/* Stamp for every packet of the datagram being parsed. */
	uint64_t arrival_ns;
	uint64_t packets_delayed;
	uint64_t packets_dropped_ring_full;
	uint64_t receive_overflows;
};

static uint64_t
monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static _Noreturn void
usage_exit(void)
{
	fprintf(stderr, "usage: nfq_delay --queue N --delay-ms D\n"
	        "  N: NFQUEUE queue number (0-65535)\n"
	        "  D: delay per packet in milliseconds (0-%d)\n", MAX_DELAY_MS);
	exit(2);
}

static bool
parse_bounded(const char *text, long max, long *value)
{
	char *end;

	errno = 0;
	*value = strtol(text, &end, 10);
	return errno == 0 && end != text && *end == '\0' && *value >= 0 && *value <= max;
}

static void
send_or_die(struct delayer *d, const struct nlmsghdr *nlh)
{
	if (mnl_socket_sendto(d->nl, nlh, nlh->nlmsg_len) < 0) {
		perror("nfq_delay: netlink send");
		exit(1);
	}
}

/* Accept every queued packet up to and including last_id, oldest first. */
static void
accept_through(struct delayer *d, uint32_t last_id)
{
	_Alignas(struct nlmsghdr) char buf[REQUEST_BYTES];
	struct nlmsghdr *nlh = nfq_nlmsg_put(buf, NFQNL_MSG_VERDICT_BATCH, d->queue);

	nfq_nlmsg_verdict_put(nlh, (int)last_id, NF_ACCEPT);
	send_or_die(d, nlh);
}

static void
drop_one(struct delayer *d, uint32_t id)
{
	_Alignas(struct nlmsghdr) char buf[REQUEST_BYTES];
	struct nlmsghdr *nlh = nfq_nlmsg_put(buf, NFQNL_MSG_VERDICT, d->queue);

	nfq_nlmsg_verdict_put(nlh, (int)id, NF_DROP);
	send_or_die(d, nlh);
}

static void
hold_packet(struct delayer *d, uint32_t id)
{
	struct delay_line *line = &d->line;

	/* Tail drop, as a router with a full buffer would. */
	if (line->count == line->capacity) {
		drop_one(d, id);
		d->packets_dropped_ring_full++;
		return;
	}
	line->slots[(line->head + line->count) & (line->capacity - 1)] = (struct held_packet){
		.id = id,
		.due_ns = d->arrival_ns + d->delay_ns,
	};
	line->count++;
	d->packets_delayed++;
}

/* Release every held packet due by now_ns; with UINT64_MAX, all of them. */
static void
release_due(struct delayer *d, uint64_t now_ns)
{
	struct delay_line *line = &d->line;
	uint32_t released = 0;
	uint32_t last_id = 0;

	while (released < line->count) {
		const struct held_packet *p = &line->slots[(line->head + released) & (line->capacity - 1)];

		if (p->due_ns > now_ns)
			break;
		last_id = p->id;
		released++;
	}
	if (released == 0)
		return;
	accept_through(d, last_id);
	line->head = (line->head + released) & (line->capacity - 1);
	line->count -= released;
}

static int
on_queue_message(const struct nlmsghdr *nlh, void *data)
{
	struct delayer *d = data;
	struct nlattr *attr[NFQA_MAX + 1] = { 0 };
	const struct nfqnl_msg_packet_hdr *hdr;

	if (nfq_nlmsg_parse(nlh, attr) < 0 || attr[NFQA_PACKET_HDR] == NULL) {
		fprintf(stderr, "nfq_delay: queue %u: message without a packet header\n", d->queue);
		return MNL_CB_OK;
	}
	hdr = mnl_attr_get_payload(attr[NFQA_PACKET_HDR]);
	hold_packet(d, ntohl(hdr->packet_id));
	return MNL_CB_OK;
}

/*
 * Read and hold whatever notifications are waiting, at most
 * DATAGRAMS_PER_ROUND datagrams.  Returns true when the last datagram
 * carried the acknowledgement of a request sent with NLM_F_ACK.
 */
static bool
receive_pending(struct delayer *d, uint32_t ack_seq, int flags)
{
	static _Alignas(struct nlmsghdr) char buf[DATAGRAM_BYTES];

	for (int round = 0; round < DATAGRAMS_PER_ROUND; round++) {
		ssize_t len = recv(mnl_socket_get_fd(d->nl), buf, sizeof(buf), flags);
		int ret;

		if (len < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return false;
			/*
			 * The socket buffer overflowed.  The kernel dropped the
			 * packets it could not notify (it enqueues a packet only
			 * after the notification is delivered), so nothing is
			 * left waiting for a verdict that will never come.
			 */
			if (errno == ENOBUFS) {
				d->receive_overflows++;
				continue;
			}
			perror("nfq_delay: netlink receive");
			exit(1);
		}
		d->arrival_ns = monotonic_ns();
		ret = mnl_cb_run(buf, (size_t)len, ack_seq, d->portid, on_queue_message, d);
		if (ret == MNL_CB_STOP)
			return true;
		if (ret == MNL_CB_ERROR && ack_seq != 0) {
			/* EPERM: another program holds the queue, or we lack CAP_NET_ADMIN. */
			fprintf(stderr, "nfq_delay: cannot bind queue %u: %s\n", d->queue, strerror(errno));
			exit(1);
		}
		/*
		 * A verdict can name packets the kernel already let go (their
		 * interface went down, the namespace is being torn down); it
		 * answers ENOENT, which is harmless.
		 */
		if (ret == MNL_CB_ERROR && errno != ENOENT)
			perror("nfq_delay: netlink error");
	}
	return false;
}

/*
 * Bind the queue and configure it in one acknowledged request, so a queue
 * number already taken by another program in this namespace (EPERM) is an
 * error at start rather than silence.
 */
static void
configure_queue(struct delayer *d)
{
	_Alignas(struct nlmsghdr) char buf[REQUEST_BYTES];
	struct nlmsghdr *nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, d->queue);
	uint32_t seq = (uint32_t)time(NULL) | 1;

	nlh->nlmsg_flags |= NLM_F_ACK;
	nlh->nlmsg_seq = seq;
	nfq_nlmsg_cfg_put_cmd(nlh, AF_INET, NFQNL_CFG_CMD_BIND);
	/* Only ids are needed: the verdict never carries a payload back. */
	nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_META, 0);
	nfq_nlmsg_cfg_put_qmaxlen(nlh, QUEUE_MAXLEN);
	/*
	 * GSO: take large segmented-offload packets whole instead of making
	 * the kernel split them first; a meta-only reader can.  Fail-open
	 * stays off: it would let packets that find the queue full skip the
	 * delay, and a link that reorders or shortcuts is worse for
	 * measurements than one that drops.
	 */
	mnl_attr_put_u32(nlh, NFQA_CFG_FLAGS, htonl(NFQA_CFG_F_GSO));
	mnl_attr_put_u32(nlh, NFQA_CFG_MASK, htonl(NFQA_CFG_F_GSO | NFQA_CFG_F_FAIL_OPEN));
	send_or_die(d, nlh);
	while (!receive_pending(d, seq, 0))
		;
}

static void
open_socket(struct delayer *d)
{
	int size = RECEIVE_BUFFER_BYTES;

	d->nl = mnl_socket_open(NETLINK_NETFILTER);
	if (d->nl == NULL || mnl_socket_bind(d->nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		perror("nfq_delay: netlink socket");
		exit(1);
	}
	d->portid = mnl_socket_get_portid(d->nl);
	/* FORCE goes past net.core.rmem_max; it needs the CAP_NET_ADMIN we need anyway. */
	if (setsockopt(mnl_socket_get_fd(d->nl), SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0)
		perror("nfq_delay: SO_RCVBUFFORCE (keeping the default buffer)");
}

/* Block the termination signals and return an fd that reports them. */
static int
termination_signal_fd(void)
{
	sigset_t mask;
	int fd;

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0 || (fd = signalfd(-1, &mask, SFD_CLOEXEC)) < 0) {
		perror("nfq_delay: signalfd");
		exit(1);
	}
	return fd;
}

static void
run(struct delayer *d, int signal_fd)
{
	struct pollfd fds[2] = {
		{ .fd = mnl_socket_get_fd(d->nl), .events = POLLIN },
		{ .fd = signal_fd, .events = POLLIN },
	};

	for (;;) {
		struct timespec wait;
		struct timespec *timeout = NULL;

		if (d->line.count > 0) {
			uint64_t now = monotonic_ns();
			uint64_t due = d->line.slots[d->line.head].due_ns;
			uint64_t left = due > now ? due - now : 0;

			wait = (struct timespec){ .tv_sec = (time_t)(left / 1000000000u),
			                          .tv_nsec = (long)(left % 1000000000u) };
			timeout = &wait;
		}
		if (ppoll(fds, 2, timeout, NULL) < 0 && errno != EINTR) {
			perror("nfq_delay: ppoll");
			exit(1);
		}
		if (fds[1].revents & POLLIN)
			return;
		/* POLLERR alone: an overflow that only a receive call clears. */
		if (fds[0].revents & (POLLIN | POLLERR))
			receive_pending(d, 0, MSG_DONTWAIT);
		release_due(d, monotonic_ns());
	}
}

int
main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "queue", required_argument, NULL, 'q' },
		{ "delay-ms", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct delayer d = { 0 };
	long queue = -1, delay_ms = -1;
	int opt, signal_fd;

	while ((opt = getopt_long(argc, argv, "q:d:h", options, NULL)) != -1) {
		switch (opt) {
		case 'q':
			if (!parse_bounded(optarg, UINT16_MAX, &queue))
				usage_exit();
			break;
		case 'd':
			if (!parse_bounded(optarg, MAX_DELAY_MS, &delay_ms))
				usage_exit();
			break;
		default:
			usage_exit();
		}
	}
	if (optind != argc || queue < 0 || delay_ms < 0)
		usage_exit();

	d.queue = (uint16_t)queue;
	d.delay_ns = (uint64_t)delay_ms * 1000000u;
	d.line.capacity = QUEUE_MAXLEN;
	d.line.slots = calloc(d.line.capacity, sizeof(*d.line.slots));
	if (d.line.slots == NULL) {
		perror("nfq_delay: calloc");
		return 1;
	}
	/* Before the queue exists, so a signal during setup is not lost. */
	signal_fd = termination_signal_fd();
	open_socket(&d);
	configure_queue(&d);
	printf("nfq_delay: queue %u, delay %ld ms\n", d.queue, delay_ms);
	fflush(stdout);

	run(&d, signal_fd);

	/*
	 * Let the held packets go now: closing the socket would drop them,
	 * and a link being taken down should not look like a lossy one.
	 */
	release_due(&d, UINT64_MAX);
	fprintf(stderr, "nfq_delay: queue %u: %" PRIu64 " packets delayed, %" PRIu64
	        " dropped (ring full), %" PRIu64 " receive buffer overflows\n",
	        d.queue, d.packets_delayed, d.packets_dropped_ring_full, d.receive_overflows);
	mnl_socket_close(d.nl);
	free(d.line.slots);
	return 0;
}
