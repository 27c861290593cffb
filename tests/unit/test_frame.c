/*
 * Frame reader: the same stream fed at every split point gives the same
 * frames, also when reads take the next header with a frame's end; bad
 * marker, oversize, undersize and truncated input are rejected with the
 * right reason.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "frame.h"
#include "prefix.h"

enum { NFRAMES = 4, STREAM_MAX = 4 * (NS_FRAME_HEADER_LEN + 300) };

static const size_t body_lens[NFRAMES] = {16, 17, 255, 300};

/* A stream of NFRAMES frames whose bodies are filled with their index. */
static size_t
make_stream(uint8_t *out)
{
	size_t off = 0;

	for (int i = 0; i < NFRAMES; i++) {
		ns_frame_header_put(out + off, body_lens[i]);
		off += NS_FRAME_HEADER_LEN;
		memset(out + off, 'a' + i, body_lens[i]);
		off += body_lens[i];
	}
	return off;
}

/* Feed chunk[0] then chunk[1] and check each frame comes out whole and in order. */
static void
feed_and_check(const uint8_t *stream, size_t len, size_t split)
{
	const size_t cuts[3] = {0, split, len};
	uint8_t body[NS_MAX_TRANSPORT_BODY];
	struct ns_frame_reader r;
	int seen = 0;

	ns_frame_reader_init(&r, body, NS_MIN_TRANSPORT_BODY, NS_MAX_TRANSPORT_BODY);
	for (int c = 0; c < 2; c++) {
		size_t off = cuts[c];
		while (off < cuts[c + 1]) {
			long n = ns_frame_reader_feed(&r, stream + off, cuts[c + 1] - off);
			size_t blen;

			assert_true(n >= 0);
			off += (size_t)n;
			if (ns_frame_reader_ready(&r, &blen)) {
				assert_int_equal(blen, body_lens[seen]);
				for (size_t i = 0; i < blen; i++)
					assert_int_equal(body[i], 'a' + seen);
				seen++;
				ns_frame_reader_next(&r);
			}
		}
	}
	assert_int_equal(seen, NFRAMES);
	assert_int_equal(ns_frame_reader_finish(&r), 0);
}

static void
test_every_split_point(void **state)
{
	uint8_t stream[STREAM_MAX];
	size_t len = make_stream(stream);

	for (size_t split = 0; split <= len; split++)
		feed_and_check(stream, len, split);
}

static void
test_byte_at_a_time_reports_missing(void **state)
{
	uint8_t stream[STREAM_MAX], body[NS_MAX_TRANSPORT_BODY];
	const size_t total = NS_FRAME_HEADER_LEN + body_lens[0];
	struct ns_frame_reader r;
	size_t blen;

	make_stream(stream);
	ns_frame_reader_init(&r, body, NS_MIN_TRANSPORT_BODY, NS_MAX_TRANSPORT_BODY);
	for (size_t i = 0; i < total; i++) {
		/* Until the header is whole only the header's remainder is known. */
		size_t want = i < NS_FRAME_HEADER_LEN ? NS_FRAME_HEADER_LEN - i : total - i;

		assert_int_equal(ns_frame_reader_missing(&r), want);
		assert_false(ns_frame_reader_ready(&r, &blen));
		assert_int_equal(ns_frame_reader_feed(&r, stream + i, 1), 1);
	}
	assert_true(ns_frame_reader_ready(&r, &blen));
	assert_int_equal(blen, body_lens[0]);
	assert_int_equal(ns_frame_reader_missing(&r), 0);
}

static void
test_space_commit(void **state)
{
	uint8_t stream[STREAM_MAX], body[NS_MAX_TRANSPORT_BODY];
	size_t len = make_stream(stream), off = 0, want, blen;
	struct ns_frame_reader r;
	int seen = 0;

	ns_frame_reader_init(&r, body, NS_MIN_TRANSPORT_BODY, NS_MAX_TRANSPORT_BODY);
	while (off < len) {
		uint8_t *space = ns_frame_reader_space(&r, &want);
		size_t n = want < 3 ? want : 3;   /* short reads, as from a socket */

		memcpy(space, stream + off, n);
		off += n;
		assert_int_equal(ns_frame_reader_commit(&r, n), 0);
		if (ns_frame_reader_ready(&r, &blen)) {
			assert_int_equal(blen, body_lens[seen++]);
			ns_frame_reader_next(&r);
		}
	}
	assert_int_equal(seen, NFRAMES);
}

/*
 * Reads that ask for the rest of a frame and the next header, of every
 * size up to that: each frame comes out whole, and each header that came
 * early is the next frame's.
 */
static void
test_read_ahead(void **state)
{
	uint8_t stream[STREAM_MAX], body[NS_MAX_TRANSPORT_BODY + NS_FRAME_HEADER_LEN];
	size_t len = make_stream(stream), want, blen;

	for (size_t step = 1; step <= 300 + NS_FRAME_HEADER_LEN; step++) {
		struct ns_frame_reader r;
		size_t off = 0;
		int seen = 0;

		ns_frame_reader_init(&r, body, NS_MIN_TRANSPORT_BODY, NS_MAX_TRANSPORT_BODY);
		while (off < len) {
			uint8_t *space = r.header_have == NS_FRAME_HEADER_LEN
			                         ? ns_frame_reader_space_ahead(&r, &want)
			                         : ns_frame_reader_space(&r, &want);
			size_t n = want < step ? want : step;

			if (n > len - off)
				n = len - off;
			memcpy(space, stream + off, n);
			off += n;
			assert_int_equal(ns_frame_reader_commit(&r, n), 0);
			assert_true(r.ahead <= NS_FRAME_HEADER_LEN);
			if (ns_frame_reader_ready(&r, &blen)) {
				assert_int_equal(blen, body_lens[seen]);
				for (size_t i = 0; i < blen; i++)
					assert_int_equal(body[i], 'a' + seen);
				seen++;
				ns_frame_reader_next(&r);
			}
		}
		assert_int_equal(seen, NFRAMES);
		assert_int_equal(r.header_have, 0);
	}
}

/* A bad header that came in with the frame before it is found when that frame is done. */
static void
test_read_ahead_bad_header(void **state)
{
	uint8_t stream[NS_FRAME_HEADER_LEN + 16 + NS_FRAME_HEADER_LEN];
	uint8_t body[64];
	struct ns_frame_reader r;
	size_t want, blen;
	uint8_t *space;

	ns_frame_header_put(stream, 16);
	memset(stream + NS_FRAME_HEADER_LEN, 'x', 16);
	memcpy(stream + NS_FRAME_HEADER_LEN + 16, (const uint8_t[]){0x80, 0x00, 0x00, 0x05}, 4);
	ns_frame_reader_init(&r, body, 16, 48);
	space = ns_frame_reader_space(&r, &want);
	memcpy(space, stream, want);
	assert_int_equal(ns_frame_reader_commit(&r, want), 0);
	space = ns_frame_reader_space_ahead(&r, &want);
	assert_int_equal(want, 16 + NS_FRAME_HEADER_LEN);
	memcpy(space, stream + NS_FRAME_HEADER_LEN, want);
	assert_int_equal(ns_frame_reader_commit(&r, want), 0);
	assert_true(ns_frame_reader_ready(&r, &blen));
	assert_int_equal(blen, 16);
	ns_frame_reader_next(&r);
	assert_int_equal(r.error, NS_FRAME_TOO_SMALL);
	assert_int_equal(ns_frame_reader_commit(&r, 1), -1);
}

static enum ns_frame_error
error_for(const uint8_t *in, size_t len, size_t min_body, size_t max_body, int at_eof)
{
	uint8_t body[NS_MAX_FRAME_BODY];
	struct ns_frame_reader r;

	ns_frame_reader_init(&r, body, min_body, max_body);
	if (ns_frame_reader_feed(&r, in, len) < 0)
		return r.error;
	if (at_eof && ns_frame_reader_finish(&r) < 0)
		return r.error;
	return NS_FRAME_OK;
}

static void
test_rejections(void **state)
{
	const uint8_t bad_marker[] = {0x81, 0x00, 0x00, 0x10};
	const uint8_t oversize[] = {0x80, 0x01, 0x00, 0x10};       /* 65552 > 65551 */
	const uint8_t max_transport[] = {0x80, 0x01, 0x00, 0x0f};  /* 65551: allowed */
	const uint8_t max_msg1[] = {0x80, 0x01, 0x00, 0x5f};       /* 65535 + 96 */
	const uint8_t over_msg1[] = {0x80, 0x01, 0x00, 0x60};
	const uint8_t undersize[] = {0x80, 0x00, 0x00, 0x0f};      /* shorter than a tag */
	const uint8_t truncated[] = {0x80, 0x00, 0x00, 0x10, 1, 2, 3};

	assert_int_equal(error_for(bad_marker, 4, 16, NS_MAX_TRANSPORT_BODY, 0), NS_FRAME_BAD_MARKER);
	assert_int_equal(error_for(oversize, 4, 16, NS_MAX_TRANSPORT_BODY, 0), NS_FRAME_TOO_LARGE);
	assert_int_equal(error_for(max_transport, 4, 16, NS_MAX_TRANSPORT_BODY, 0), NS_FRAME_OK);
	assert_int_equal(error_for(max_msg1, 4, NS_MSG1_OVERHEAD, NS_MAX_MSG1_BODY, 0), NS_FRAME_OK);
	assert_int_equal(error_for(over_msg1, 4, NS_MSG1_OVERHEAD, NS_MAX_MSG1_BODY, 0),
	                 NS_FRAME_TOO_LARGE);
	assert_int_equal(error_for(undersize, 4, 16, NS_MAX_TRANSPORT_BODY, 0), NS_FRAME_TOO_SMALL);
	assert_int_equal(error_for(truncated, sizeof(truncated), 16, NS_MAX_TRANSPORT_BODY, 1),
	                 NS_FRAME_TRUNCATED);
	assert_int_equal(error_for(truncated, 2, 16, NS_MAX_TRANSPORT_BODY, 1), NS_FRAME_TRUNCATED);
	assert_int_equal(error_for(truncated, 0, 16, NS_MAX_TRANSPORT_BODY, 1), NS_FRAME_OK);

	/* Each reason reads differently. */
	assert_string_not_equal(ns_frame_strerror(NS_FRAME_BAD_MARKER),
	                        ns_frame_strerror(NS_FRAME_TOO_LARGE));
	assert_string_not_equal(ns_frame_strerror(NS_FRAME_TOO_SMALL),
	                        ns_frame_strerror(NS_FRAME_TRUNCATED));
}

static void
test_error_is_sticky(void **state)
{
	const uint8_t bad[] = {0x00, 0x00, 0x00, 0x10, 0x80, 0x00, 0x00, 0x10};
	uint8_t body[64];
	struct ns_frame_reader r;

	ns_frame_reader_init(&r, body, 16, sizeof(body));
	assert_int_equal(ns_frame_reader_feed(&r, bad, sizeof(bad)), -1);
	assert_int_equal(ns_frame_reader_feed(&r, bad + 4, 4), -1);
	assert_int_equal(r.error, NS_FRAME_BAD_MARKER);
}

static void
test_prefix(void **state)
{
	const uint8_t *p = (const uint8_t *)NS_ROUTE_PREFIX_DEFAULT;
	uint8_t parsed[NS_ROUTE_PREFIX_LEN];

	assert_int_equal(ns_prefix_match(p, 8, p), NS_PREFIX_MATCH);
	assert_int_equal(ns_prefix_match(p, 3, p), NS_PREFIX_PARTIAL);
	assert_int_equal(ns_prefix_match((const uint8_t *)"GET / HT", 8, p), NS_PREFIX_MISMATCH);
	assert_int_equal(ns_prefix_match((const uint8_t *)"DRX", 3, p), NS_PREFIX_MISMATCH);
	assert_int_equal(ns_prefix_parse("DRPC!N!2", parsed), 0);
	assert_memory_equal(parsed, "DRPC!N!2", 8);
	assert_int_equal(ns_prefix_parse("short", parsed), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_split_point),
		cmocka_unit_test(test_byte_at_a_time_reports_missing),
		cmocka_unit_test(test_space_commit),
		cmocka_unit_test(test_read_ahead),
		cmocka_unit_test(test_read_ahead_bad_header),
		cmocka_unit_test(test_rejections),
		cmocka_unit_test(test_error_is_sticky),
		cmocka_unit_test(test_prefix),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
