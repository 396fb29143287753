/* SPDX-License-Identifier: MIT */
/*
 * Windows found by path rather than handed over as descriptors: a shared
 * memory file on the host (tests), or an ivshmem BAR in a guest
 * (/sys/bus/pci/devices/BDF/resource2).  A file the peer can truncate would
 * turn our accesses into SIGBUS: give an untrusted peer a sealed memfd
 * (partitioner, ivshmem server) or a BAR, never a plain file.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "os.h"

int xvl_os_window_open_path(struct xvl_os_window *w, const char *path, uint64_t create_size,
			    struct xvl_errbuf *eb)
{
	int fd = open(path, O_RDWR | O_CLOEXEC | (create_size ? O_CREAT : 0), 0600);
	if (fd < 0)
		return xvl_err(eb, -errno, "window %s: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		return xvl_err(eb, -e, "window %s: %s", path, strerror(e));
	}
	uint64_t size = (uint64_t)st.st_size;
	if (create_size && size < create_size && S_ISREG(st.st_mode)) {
		if (ftruncate(fd, (off_t)create_size) < 0) {
			int e = errno;
			close(fd);
			return xvl_err(eb, -e, "window %s: cannot size it to %llu bytes: %s", path,
				       (unsigned long long)create_size, strerror(e));
		}
		size = create_size;
	}
	if (size < XVL_WIN_MIN_SIZE) {
		close(fd);
		return xvl_err(eb, -EAGAIN, "window %s: %llu bytes, not (yet) a window", path,
			       (unsigned long long)size);
	}
	return xvl_os_window_map(w, fd, size, eb);
}
