/* fileio.h -- whole writes, zero fills, wiping and directory syncs */
#ifndef SUBGATE_FILEIO_H
#define SUBGATE_FILEIO_H

#include <stddef.h>
#include <stdint.h>

/* Write (at the offset, for fio_pwrite_all) all of p[0..n), across short
 * writes and EINTR. 0, or -1 with errno. */
int	fio_write_all(int fd, const void *p, size_t n);
int	fio_pwrite_all(int fd, const void *p, size_t n, uint64_t off);
/* Zeros over [from, *to) of fd. 0, or -1 with errno and *to set to where
 * the zeros end. */
int	fio_zero(int fd, uint64_t from, uint64_t *to);
/*
 * Overwrite the whole file with zeros, so that a key it held is not left in
 * the blocks a rename over it or an unlink frees. With flush, fdatasync
 * makes that durable here. Without, the zeros are written to the device
 * and waited for but its cache is not flushed: the next fsync or fdatasync
 * of anything on the same filesystem does that (for a caller that makes
 * one anyway, and saves a cache flush). Best effort against the storage
 * underneath: a copy-on-write filesystem or a disk's flash translation
 * layer may keep the old blocks. 0, or -1 with errno.
 */
int	fio_wipe(int fd, int flush);
/* fio_wipe of dir/name (a missing file is nothing to wipe). */
int	fio_wipe_at(int dirfd, const char *name, int flush);
/* fsync the directory that holds path. 0, or -1 with errno. */
int	fio_fsync_dir_of(const char *path);

#endif
