/* fileio.c -- whole writes, zero fills, wiping and directory syncs */
#include <sys/stat.h>
#include <sys/uio.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fileio.h"

#define ZERO_CHUNK	65536

int
fio_write_all(int fd, const void *p, size_t n)
{
	const char	*s = p;
	ssize_t		 r;

	while (n > 0) {
		if ((r = write(fd, s, n)) == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		s += r;
		n -= (size_t)r;
	}
	return 0;
}

int
fio_pwrite_all(int fd, const void *p, size_t n, uint64_t off)
{
	const char	*s = p;
	ssize_t		 r;

	while (n > 0) {
		if ((r = pwrite(fd, s, n, (off_t)off)) == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		s += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

/* One pwritev of up to 1024 chunks (64 MiB) at a time. */
int
fio_zero(int fd, uint64_t from, uint64_t *to)
{
	static unsigned char		 zeros[ZERO_CHUNK];
	struct iovec			 iov[1024];
	uint64_t			 n;
	ssize_t				 r;
	int				 i;

	while (from < *to) {
		for (i = 0, n = 0; i < 1024 && n < *to - from; i++) {
			iov[i].iov_base = zeros;
			iov[i].iov_len = *to - from - n < ZERO_CHUNK ?
			    (size_t)(*to - from - n) : ZERO_CHUNK;
			n += iov[i].iov_len;
		}
		if ((r = pwritev(fd, iov, i, (off_t)from)) == -1) {
			if (errno == EINTR)
				continue;
			*to = from;
			return -1;
		}
		from += (uint64_t)r;
	}
	return 0;
}

int
fio_wipe(int fd, int flush)
{
	struct stat	 st;
	uint64_t	 end;

	if (fstat(fd, &st) == -1)
		return -1;
	end = (uint64_t)st.st_size;
	if (fio_zero(fd, 0, &end) == -1)
		return -1;
	if (flush)
		return fdatasync(fd);
	return sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WAIT_BEFORE |
	    SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
}

int
fio_wipe_at(int dirfd, const char *name, int flush)
{
	int	 fd, rc, e;

	if ((fd = openat(dirfd, name, O_WRONLY | O_NOFOLLOW | O_CLOEXEC)) ==
	    -1)
		return errno == ENOENT ? 0 : -1;
	rc = fio_wipe(fd, flush);
	e = errno;
	close(fd);
	errno = e;
	return rc;
}

int
fio_fsync_dir_of(const char *path)
{
	char	*copy;
	int	 fd, rc = -1, e;

	if ((copy = strdup(path)) == NULL)
		return -1;
	if ((fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) !=
	    -1) {
		rc = fsync(fd);
		e = errno;
		close(fd);
		errno = e;
	}
	free(copy);
	return rc;
}
