/*
 * fs.c: the default file layer (util.h, "file layer"): each entry is the
 * system call of the same name. The engine calls through nk_fs so that tests
 * can install the fault-injecting layer (faultfs.c) instead.
 */
#define _GNU_SOURCE
#include "util/util.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

static int sys_open(const char *path, int flags, int mode)
{
    return open(path, flags, (mode_t)mode);
}
static long sys_write(int fd, const void *buf, size_t n)
{
    return (long)write(fd, buf, n);
}
static long sys_pwritev(int fd, const struct iovec *iov, int cnt, int64_t off)
{
    return (long)pwritev(fd, iov, cnt, (off_t)off);
}
static long sys_pread(int fd, void *buf, size_t n, int64_t off)
{
    return (long)pread(fd, buf, n, (off_t)off);
}
static long sys_read(int fd, void *buf, size_t n)
{
    return (long)read(fd, buf, n);
}
static int sys_ftruncate(int fd, int64_t len)
{
    return ftruncate(fd, (off_t)len);
}
static int sys_fallocate(int fd, int mode, int64_t off, int64_t len)
{
    return fallocate(fd, mode, (off_t)off, (off_t)len);
}
static int sys_mkdir(const char *path, int mode)
{
    return mkdir(path, (mode_t)mode);
}
static void *sys_mmap(size_t len, int prot, int flags, int fd, int64_t off)
{
    return mmap(NULL, len, prot, flags, fd, (off_t)off);
}

static const struct nk_fs_ops sys_ops = {
    .open = sys_open,
    .close = close,
    .write = sys_write,
    .pwritev = sys_pwritev,
    .pread = sys_pread,
    .read = sys_read,
    .fsync = fsync,
    .fdatasync = fdatasync,
    .ftruncate = sys_ftruncate,
    .fallocate = sys_fallocate,
    .rename = rename,
    .link = link,
    .unlink = unlink,
    .mkdir = sys_mkdir,
    .rmdir = rmdir,
    .mmap = sys_mmap,
};

const struct nk_fs_ops *nk_fs = &sys_ops;

void nk_fs_install(const struct nk_fs_ops *ops)
{
    nk_fs = ops ? ops : &sys_ops;
}
