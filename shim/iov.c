/*
 * Byte-offset helpers over the program's iovec arrays.
 */
#include "iov.h"

#include <string.h>

/* Total bytes iov describes. */
size_t
ns_iov_total(const struct iovec *iov, int iovcnt)
{
	size_t total = 0;

	for (int i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	return total;
}

/*
 * Walk n bytes of iov from byte offset, calling copy for each contiguous
 * piece with its position in the flat range.
 */
static void
walk(const struct iovec *iov, int iovcnt, size_t offset, size_t n,
     void (*copy)(uint8_t *piece, size_t len, size_t at, void *ctx), void *ctx)
{
	size_t at = 0;

	for (int i = 0; i < iovcnt && n > 0; i++) {
		if (offset >= iov[i].iov_len) {
			offset -= iov[i].iov_len;
			continue;
		}
		size_t take = iov[i].iov_len - offset < n ? iov[i].iov_len - offset : n;
		copy((uint8_t *)iov[i].iov_base + offset, take, at, ctx);
		at += take;
		n -= take;
		offset = 0;
	}
}

static void
copy_out(uint8_t *piece, size_t len, size_t at, void *dst)
{
	memcpy((uint8_t *)dst + at, piece, len);
}

static void
copy_in(uint8_t *piece, size_t len, size_t at, void *src)
{
	memcpy(piece, (const uint8_t *)src + at, len);
}

/* Copy n bytes starting at byte offset of iov into dst. */
void
ns_iov_gather(const struct iovec *iov, int iovcnt, size_t offset, uint8_t *dst, size_t n)
{
	walk(iov, iovcnt, offset, n, copy_out, dst);
}

/* Copy n bytes of src into iov starting at byte offset. */
void
ns_iov_scatter(const struct iovec *iov, int iovcnt, size_t offset, const uint8_t *src, size_t n)
{
	walk(iov, iovcnt, offset, n, copy_in, (void *)src);
}

/* The n bytes at byte offset of iov if one element holds them all, else NULL. */
const uint8_t *
ns_iov_contiguous(const struct iovec *iov, int iovcnt, size_t offset, size_t n)
{
	for (int i = 0; i < iovcnt; i++) {
		if (offset < iov[i].iov_len)
			return iov[i].iov_len - offset >= n ? (const uint8_t *)iov[i].iov_base + offset
			                                    : NULL;
		offset -= iov[i].iov_len;
	}
	return NULL;
}

/* Whether iov starts with the n bytes at data. */
int
ns_iov_starts_with(const struct iovec *iov, int iovcnt, const uint8_t *data, size_t n)
{
	if (ns_iov_total(iov, iovcnt) < n)
		return 0;
	for (int i = 0; i < iovcnt && n > 0; i++) {
		size_t take = iov[i].iov_len < n ? iov[i].iov_len : n;
		if (memcmp(iov[i].iov_base, data, take) != 0)
			return 0;
		data += take;
		n -= take;
	}
	return 1;
}
