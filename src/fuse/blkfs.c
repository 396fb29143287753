/* SPDX-License-Identifier: MIT */
/* FUSE file system of xvloop block devices; see blkfs.h. */
#define FUSE_USE_VERSION 35
#include <fuse3/fuse.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "blkfs.h"

static struct blkfs_opts *opts_of_context(void)
{
	return fuse_get_context()->private_data;
}

static struct blkfs_file *lookup(const char *path)
{
	struct blkfs_opts *o = opts_of_context();
	if (*path != '/')
		return NULL;
	for (unsigned i = 0; i < o->n_files; i++)
		if (!strcmp(path + 1, o->files[i].name))
			return &o->files[i];
	return NULL;
}

static struct xvl_blk_info info_of(const struct blkfs_file *f)
{
	struct xvl_blk_info in;
	xbs_info(f->dev, &in);
	return in;
}

static void *blkfs_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	(void)conn;
	cfg->use_ino = 0;
	cfg->direct_io = 0; /* the page cache makes mmap work */
	cfg->kernel_cache = 0;
	return opts_of_context();
}

static int blkfs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	(void)fi;
	memset(st, 0, sizeof(*st));
	st->st_uid = getuid();
	st->st_mtime = st->st_ctime = st->st_atime = opts_of_context()->started;
	st->st_gid = getgid();
	if (!strcmp(path, "/")) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
		return 0;
	}
	struct blkfs_file *f = lookup(path);
	if (!f)
		return -ENOENT;
	struct xvl_blk_info in = info_of(f);
	st->st_mode = S_IFREG | (in.read_only ? 0444 : 0644);
	st->st_nlink = 1;
	st->st_size = (off_t)in.capacity;
	st->st_blksize = in.block_size > 4096 ? in.block_size : 4096;
	st->st_blocks = (blkcnt_t)(in.capacity / 512);
	return 0;
}

static int blkfs_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
			 struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	(void)off, (void)fi, (void)flags;
	if (strcmp(path, "/"))
		return -ENOTDIR;
	struct blkfs_opts *o = opts_of_context();
	fill(buf, ".", NULL, 0, 0);
	fill(buf, "..", NULL, 0, 0);
	for (unsigned i = 0; i < o->n_files; i++)
		fill(buf, o->files[i].name, NULL, 0, 0);
	return 0;
}

static int blkfs_open(const char *path, struct fuse_file_info *fi)
{
	struct blkfs_file *f = lookup(path);
	if (!f)
		return -ENOENT;
	if ((fi->flags & O_ACCMODE) != O_RDONLY && info_of(f).read_only)
		return -EROFS;
	fi->fh = (uint64_t)(uintptr_t)f;
	fi->keep_cache = 0;
	return 0;
}

static struct blkfs_file *file_of(const char *path, struct fuse_file_info *fi)
{
	return fi && fi->fh ? (struct blkfs_file *)(uintptr_t)fi->fh : lookup(path);
}

static int blkfs_read(const char *path, char *buf, size_t size, off_t off,
		      struct fuse_file_info *fi)
{
	struct blkfs_file *f = file_of(path, fi);
	if (!f)
		return -ENOENT;
	uint64_t cap = info_of(f).capacity;
	if (off < 0 || (uint64_t)off >= cap)
		return 0;
	if (size > cap - (uint64_t)off)
		size = (size_t)(cap - (uint64_t)off);
	int rc = xbs_read(f->dev, buf, size, (uint64_t)off);
	return rc < 0 ? rc : (int)size;
}

static int blkfs_write(const char *path, const char *buf, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct blkfs_file *f = file_of(path, fi);
	if (!f)
		return -ENOENT;
	uint64_t cap = info_of(f).capacity;
	if (off < 0 || (uint64_t)off >= cap)
		return -EFBIG; /* nothing written: the device ends at cap */
	if (size > cap - (uint64_t)off)
		size = (size_t)(cap - (uint64_t)off); /* a short write, as on a full disk */
	int rc = xbs_write(f->dev, buf, size, (uint64_t)off);
	return rc < 0 ? (rc == -ENODEV ? -EIO : rc) : (int)size;
}

static int blkfs_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	(void)datasync;
	struct blkfs_file *f = file_of(path, fi);
	if (!f)
		return -ENOENT;
	int rc = xbs_flush(f->dev);
	return rc < 0 ? -EIO : 0;
}

static int blkfs_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	struct blkfs_file *f = file_of(path, fi);
	if (!f)
		return -ENOENT;
	return (uint64_t)size == info_of(f).capacity ? 0 : -EPERM;
}

static int blkfs_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
	(void)tv, (void)fi;
	return lookup(path) || !strcmp(path, "/") ? 0 : -ENOENT; /* no times are kept */
}

static int blkfs_statfs(const char *path, struct statvfs *s)
{
	(void)path;
	struct blkfs_opts *o = opts_of_context();
	memset(s, 0, sizeof(*s));
	s->f_bsize = s->f_frsize = 512;
	for (unsigned i = 0; i < o->n_files; i++)
		s->f_blocks += info_of(&o->files[i]).capacity / 512;
	s->f_files = o->n_files;
	s->f_namemax = 31;
	return 0;
}

static const struct fuse_operations ops = {
	.init = blkfs_init,
	.getattr = blkfs_getattr,
	.readdir = blkfs_readdir,
	.open = blkfs_open,
	.read = blkfs_read,
	.write = blkfs_write,
	.fsync = blkfs_fsync,
	.truncate = blkfs_truncate,
	.utimens = blkfs_utimens,
	.statfs = blkfs_statfs,
};

int blkfs_run(struct blkfs_opts *o)
{
	char mount_opts[200];
	o->started = time(NULL);
	/* max_threads: libfuse 3.14's fuse_main otherwise warns about an unset value */
	snprintf(mount_opts, sizeof(mount_opts),
		 "fsname=%s,subtype=xvloop,default_permissions,max_threads=16%s",
		 o->fsname, o->allow_other ? ",allow_other" : "");
	char *argv[10];
	int argc = 0;
	argv[argc++] = (char *)"xvl-blk-mount";
	argv[argc++] = (char *)o->mountpoint;
	argv[argc++] = (char *)"-o";
	argv[argc++] = mount_opts;
	if (o->foreground)
		argv[argc++] = (char *)"-f";
	if (o->debug)
		argv[argc++] = (char *)"-d";
	if (o->single_thread)
		argv[argc++] = (char *)"-s";
	argv[argc] = NULL;
	return fuse_main(argc, argv, &ops, o) ? 1 : 0;
}
