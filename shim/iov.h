/*
 * Byte-offset helpers over the program's iovec arrays.
 */
#ifndef NOISESHIM_IOV_H
#define NOISESHIM_IOV_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* Total bytes iov describes. */
size_t ns_iov_total(const struct iovec *iov, int iovcnt);

/* Copy n bytes starting at byte offset of iov into dst. */
void ns_iov_gather(const struct iovec *iov, int iovcnt, size_t offset, uint8_t *dst, size_t n);

/* Copy n bytes of src into iov starting at byte offset. */
void ns_iov_scatter(const struct iovec *iov, int iovcnt, size_t offset, const uint8_t *src,
                    size_t n);

/* The n bytes at byte offset of iov if one element holds them all, else NULL. */
const uint8_t *ns_iov_contiguous(const struct iovec *iov, int iovcnt, size_t offset, size_t n);

/* Whether iov starts with the n bytes at data. */
int ns_iov_starts_with(const struct iovec *iov, int iovcnt, const uint8_t *data, size_t n);

#endif
