/*
 * faultfs.c: the fault-injecting file layer (util.h, "file layer"), for
 * power-loss and disk-error tests of the storage modules.
 *
 * Model. The real file system plays the OS page cache: every operation is
 * carried out on it at once, so the code under test reads back what it
 * wrote, as it would on a live machine. What a disk would hold after a power
 * cut is simulated by undo records:
 *
 *   - per file (keyed by device and inode, so renames do not matter): every
 *     write, truncate and fallocate since the file's last fsync/fdatasync,
 *     with the bytes and size it replaced. A sync drops the records.
 *   - per directory: every create, mkdir, rename and unlink in it since its
 *     last fsync. A file removed or replaced meanwhile is kept as a hard link
 *     in the stash directory until its removal is durable, so that it can
 *     come back.
 *
 * nk_faultfs_power_restore() undoes, newest first, all file records past a
 * random prefix per file (sometimes tearing the last kept write at a random
 * byte) and all directory records past a random global prefix. fsync does no
 * real I/O: durability is what these records say, not what the real disk did.
 *
 * One mutex orders all operations, so a cut falls between two operations
 * and every thread sees it at once. Reads are not recorded; they fail (EIO)
 * once the power is cut.
 */
#define _GNU_SOURCE
#include "util/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

enum undo_kind { U_WRITE, U_TRUNC, U_ALLOC };

struct undo {
    enum undo_kind kind;
    uint64_t off, len;  /* U_WRITE: the range written; U_TRUNC: len = new size */
    uint64_t old_size;  /* the file's size before the operation */
    uint8_t *old;       /* replaced bytes (the part below old_size); NULL: all zero */
    uint64_t old_off, old_len;
};

struct ffile {
    dev_t dev;
    ino_t ino;
    int shadow; /* O_RDWR descriptor of ours, opened at the first record; -1 */
    struct undo *u;
    size_t nu, capu;
    struct ffile *next;
};

enum dirop_kind { D_CREATE, D_MKDIR, D_RENAME, D_UNLINK };

struct dirop {
    enum dirop_kind kind;
    char *dir;   /* canonical directory whose fsync makes it durable */
    char *path;  /* created / removed / rename target */
    char *from;  /* rename source */
    char *stash; /* removed or replaced file, kept; NULL */
};

struct fdinfo {
    bool used, is_dir;
    char *path; /* canonical for directories, absolute for files */
    struct ffile *file;
};

struct rule {
    unsigned ops;
    char *part;
    int err;
    int count;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static char *stash_dir;
static uint64_t stash_seq;
static struct nk_rng rng;
static bool dead;
static uint64_t cut_at; /* 0: none */
static uint64_t nops, ninjected;
static struct rule rules[8];
static struct fdinfo *fds;
static size_t nfds;
static struct ffile *files;
static struct dirop *dops;
static size_t ndops, capdops;

/* ----------------------------------------------------------------- helpers */

static char *dir_of(const char *path)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    size_t n = strlen(buf);
    while (n > 1 && buf[n - 1] == '/')
        buf[--n] = 0;
    char *slash = strrchr(buf, '/');
    if (!slash)
        snprintf(buf, sizeof buf, ".");
    else if (slash == buf)
        buf[1] = 0;
    else
        *slash = 0;
    char real[PATH_MAX];
    if (!realpath(buf, real))
        return nk_strdup(buf);
    return nk_strdup(real);
}

static const char *base_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* canonical directory + "/" + base name: stable however the caller spelled it */
static char *abs_path(const char *path)
{
    char *d = dir_of(path);
    size_t n = strlen(d) + strlen(base_of(path)) + 2;
    char *p = nk_malloc(n);
    snprintf(p, n, "%s/%s", d, base_of(path));
    free(d);
    return p;
}

static struct fdinfo *fdi(int fd)
{
    if (fd < 0 || (size_t)fd >= nfds || !fds[fd].used)
        return NULL;
    return &fds[fd];
}

static void fd_track(int fd, bool is_dir, char *path, struct ffile *f)
{
    if ((size_t)fd >= nfds) {
        size_t n = nfds ? nfds : 256;
        while (n <= (size_t)fd)
            n *= 2;
        fds = nk_realloc(fds, n * sizeof *fds);
        memset(fds + nfds, 0, (n - nfds) * sizeof *fds);
        nfds = n;
    }
    free(fds[fd].path);
    fds[fd] = (struct fdinfo){true, is_dir, path, f};
}

static struct ffile *file_for(int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return NULL;
    for (struct ffile *f = files; f; f = f->next)
        if (f->dev == st.st_dev && f->ino == st.st_ino)
            return f;
    struct ffile *f = nk_calloc(1, sizeof *f);
    f->dev = st.st_dev;
    f->ino = st.st_ino;
    f->shadow = -1;
    f->next = files;
    files = f;
    return f;
}

static void undo_clear(struct ffile *f)
{
    for (size_t i = 0; i < f->nu; i++)
        free(f->u[i].old);
    f->nu = 0;
}

/* Saves [off, off + len) of the file (the part below size); NULL when all zero. */
static uint8_t *save_bytes(int fd, uint64_t off, uint64_t len)
{
    if (len == 0)
        return NULL;
    uint8_t *b = nk_malloc((size_t)len);
    size_t got = 0;
    while (got < len) {
        ssize_t k = pread(fd, b + got, (size_t)len - got, (off_t)(off + got));
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    memset(b + got, 0, (size_t)len - got);
    for (size_t i = 0; i < len; i++)
        if (b[i])
            return b;
    free(b);
    return NULL;
}

static struct undo *undo_push(struct ffile *f, int user_fd)
{
    if (f->shadow < 0) {
        char p[64];
        snprintf(p, sizeof p, "/proc/self/fd/%d", user_fd);
        f->shadow = open(p, O_RDWR | O_CLOEXEC);
        NK_ASSERT(f->shadow >= 0);
    }
    if (f->nu == f->capu) {
        f->capu = f->capu ? 2 * f->capu : 16;
        f->u = nk_realloc(f->u, f->capu * sizeof *f->u);
    }
    struct undo *u = &f->u[f->nu++];
    memset(u, 0, sizeof *u);
    struct stat st;
    NK_ASSERT(fstat(f->shadow, &st) == 0);
    u->old_size = (uint64_t)st.st_size;
    return u;
}

static void record_write(struct fdinfo *d, int fd, uint64_t off, uint64_t len)
{
    if (!d || d->is_dir || !d->file)
        return;
    struct undo *u = undo_push(d->file, fd);
    u->kind = U_WRITE;
    u->off = off;
    u->len = len;
    if (off < u->old_size) {
        u->old_off = off;
        u->old_len = NK_MIN(len, u->old_size - off);
        u->old = save_bytes(d->file->shadow, u->old_off, u->old_len);
    }
}

static void dirop_push(enum dirop_kind k, char *dir, char *path, char *from, char *stash)
{
    if (ndops == capdops) {
        capdops = capdops ? 2 * capdops : 64;
        dops = nk_realloc(dops, capdops * sizeof *dops);
    }
    dops[ndops++] = (struct dirop){k, dir, path, from, stash};
}

static void dirop_free(struct dirop *d, bool drop_stash)
{
    if (drop_stash && d->stash)
        unlink(d->stash);
    free(d->dir);
    free(d->path);
    free(d->from);
    free(d->stash);
}

/* Keeps the current file at path as a hard link in the stash; NULL if none. */
static char *stash_file(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return NULL;
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s/%" PRIu64, stash_dir, ++stash_seq);
    if (link(path, buf) != 0)
        return NULL;
    return nk_strdup(buf);
}

/*
 * Every operation passes here first (mu held): false with errno set when it
 * must fail (power cut, injected error). Mutating operations count towards
 * an armed cut.
 */
static bool admit(unsigned kind, const char *path)
{
    if (dead) {
        errno = EIO;
        return false;
    }
    if (kind != NK_FAULT_READ) {
        nops++;
        if (cut_at && nops >= cut_at) {
            dead = true;
            errno = EIO;
            return false;
        }
    }
    for (size_t i = 0; i < NK_ARRAY_LEN(rules); i++) {
        struct rule *r = &rules[i];
        if (r->count == 0 || !(r->ops & kind))
            continue;
        if (r->part && (!path || !strstr(path, r->part)))
            continue;
        if (r->count > 0)
            r->count--;
        ninjected++;
        errno = r->err;
        return false;
    }
    return true;
}

static const char *fd_path(int fd)
{
    struct fdinfo *d = fdi(fd);
    return d ? d->path : NULL;
}

/* -------------------------------------------------------------- operations */

static int do_truncate(int fd, int64_t len)
{
    struct fdinfo *d = fdi(fd);
    if (d && !d->is_dir && d->file) {
        struct undo *u = undo_push(d->file, fd);
        u->kind = U_TRUNC;
        u->len = (uint64_t)len;
        if ((uint64_t)len < u->old_size) {
            u->old_off = (uint64_t)len;
            u->old_len = u->old_size - (uint64_t)len;
            u->old = save_bytes(d->file->shadow, u->old_off, u->old_len);
        }
    }
    return ftruncate(fd, (off_t)len);
}

static int f_open(const char *path, int flags, int mode)
{
    pthread_mutex_lock(&mu);
    bool creating = false;
    if (flags & O_CREAT) {
        struct stat st;
        creating = lstat(path, &st) != 0;
    }
    int fd = -1;
    if (!admit(creating ? NK_FAULT_OPEN_CREATE : NK_FAULT_READ, path))
        goto out;
    fd = open(path, flags & ~O_TRUNC, (mode_t)mode);
    if (fd < 0)
        goto out;
    struct stat st;
    if (fstat(fd, &st) != 0)
        goto out;
    if (S_ISDIR(st.st_mode)) {
        char real[PATH_MAX];
        fd_track(fd, true, nk_strdup(realpath(path, real) ? real : path), NULL);
        goto out;
    }
    fd_track(fd, false, abs_path(path), file_for(fd));
    if (creating)
        dirop_push(D_CREATE, dir_of(path), abs_path(path), NULL, NULL);
    if ((flags & O_TRUNC) && st.st_size > 0 && (flags & O_ACCMODE) != O_RDONLY)
        do_truncate(fd, 0);
out:;
    int e = errno;
    pthread_mutex_unlock(&mu);
    errno = e;
    return fd;
}

static int f_close(int fd)
{
    pthread_mutex_lock(&mu);
    struct fdinfo *d = fdi(fd);
    if (d) {
        free(d->path);
        memset(d, 0, sizeof *d);
    }
    int rc = close(fd);
    pthread_mutex_unlock(&mu);
    return rc;
}

static long f_write(int fd, const void *buf, size_t n)
{
    pthread_mutex_lock(&mu);
    long rc = -1;
    if (admit(NK_FAULT_WRITE, fd_path(fd))) {
        off_t off = lseek(fd, 0, SEEK_CUR);
        if (off >= 0)
            record_write(fdi(fd), fd, (uint64_t)off, n);
        rc = (long)write(fd, buf, n);
    }
    int e = errno;
    pthread_mutex_unlock(&mu);
    errno = e;
    return rc;
}

static long f_pwritev(int fd, const struct iovec *iov, int cnt, int64_t off)
{
    pthread_mutex_lock(&mu);
    long rc = -1;
    if (admit(NK_FAULT_WRITE, fd_path(fd))) {
        uint64_t len = 0;
        for (int i = 0; i < cnt; i++)
            len += iov[i].iov_len;
        record_write(fdi(fd), fd, (uint64_t)off, len);
        rc = (long)pwritev(fd, iov, cnt, (off_t)off);
    }
    int e = errno;
    pthread_mutex_unlock(&mu);
    errno = e;
    return rc;
}

static long f_pread(int fd, void *buf, size_t n, int64_t off)
{
    pthread_mutex_lock(&mu);
    bool ok = admit(NK_FAULT_READ, fd_path(fd));
    int e = errno;
    pthread_mutex_unlock(&mu);
    if (!ok) {
        errno = e;
        return -1;
    }
    return (long)pread(fd, buf, n, (off_t)off);
}

static long f_read(int fd, void *buf, size_t n)
{
    pthread_mutex_lock(&mu);
    bool ok = admit(NK_FAULT_READ, fd_path(fd));
    int e = errno;
    pthread_mutex_unlock(&mu);
    if (!ok) {
        errno = e;
        return -1;
    }
    return (long)read(fd, buf, n);
}

static void *f_mmap(size_t len, int prot, int flags, int fd, int64_t off)
{
    pthread_mutex_lock(&mu);
    bool ok = admit(NK_FAULT_READ, fd_path(fd));
    int e = errno;
    pthread_mutex_unlock(&mu);
    if (!ok) {
        errno = e;
        return MAP_FAILED;
    }
    return mmap(NULL, len, prot, flags, fd, (off_t)off);
}

static int f_sync(int fd)
{
    pthread_mutex_lock(&mu);
    int rc = -1;
    struct fdinfo *d = fdi(fd);
    if (admit(NK_FAULT_SYNC, d ? d->path : NULL)) {
        rc = 0;
        if (d && d->is_dir) {
            size_t k = 0;
            for (size_t i = 0; i < ndops; i++) {
                if (strcmp(dops[i].dir, d->path) == 0)
                    dirop_free(&dops[i], true);
                else
                    dops[k++] = dops[i];
            }
            ndops = k;
        } else if (d && d->file) {
            undo_clear(d->file);
        }
    }
    int e = errno;
    pthread_mutex_unlock(&mu);
    errno = e;
    return rc;
}

static int f_ftruncate(int fd, int64_t len)
{
    pthread_mutex_lock(&mu);
    int rc = -1;
    if (admit(NK_FAULT_TRUNCATE, fd_path(fd)))
        rc = do_truncate(fd, len);
    int e = errno;
    pthread_mutex_unlock(&mu);
    errno = e;
    return rc;
}

static int f_fallocate(int fd, int mode, int64_t off, int64_t len)
{
    pthread_mutex_lock(&mu);
    int rc = -1;
    struct fdinfo *d = fdi(fd);
    if (admit(NK_FAULT_FALLOCATE, d ? d->path : NULL)) {
        if (d && !d->is_dir && d->file) {
            struct undo *u = undo_push(d->file, fd);
            u->kind = U_ALLOC;
        }
        rc = fallocate(fd, mode, (off_t)off, (off_t)len);
    }
    int e = errno;
    pthread_mutex_unlock(&mu);
    errno = e;
    return rc;
}

static int f_rename(const char *from, const char *to)
{
    pthread_mutex_lock(&mu);
    int rc = -1;
    if (admit(NK_FAULT_RENAME, to)) {
        char *stash = stash_file(to);
        rc = rename(from, to);
        if (rc == 0)
            dirop_push(D_RENAME, dir_of(to), abs_path(to), abs_path(from), stash);
        else if (stash) {
            unlink(stash);
            free(stash);
        }
    }
    int e = errno;
    pthread_mutex_unlock(&mu);
    errno = e;
    return rc;
}

/* A new name for an existing file: reverts like a create of that name. */
static int f_link(const char *from, const char *to)
{
    pthread_mutex_lock(&mu);
    int rc = -1;
    if (admit(NK_FAULT_RENAME, to)) {
        rc = link(from, to);
        if (rc == 0)
            dirop_push(D_CREATE, dir_of(to), abs_path(to), NULL, NULL);
    }
    int e = errno;
    pthread_mutex_unlock(&mu);
    errno = e;
    return rc;
}

static int f_unlink(const char *path)
{
    pthread_mutex_lock(&mu);
    int rc = -1;
    if (admit(NK_FAULT_UNLINK, path)) {
        char *stash = stash_file(path);
        rc = unlink(path);
        if (rc == 0)
            dirop_push(D_UNLINK, dir_of(path), abs_path(path), NULL, stash);
        else if (stash) {
            unlink(stash);
            free(stash);
        }
    }
    int e = errno;
    pthread_mutex_unlock(&mu);
    errno = e;
    return rc;
}

static int f_mkdir(const char *path, int mode)
{
    pthread_mutex_lock(&mu);
    int rc = -1;
    if (admit(NK_FAULT_MKDIR, path)) {
        rc = mkdir(path, (mode_t)mode);
        if (rc == 0)
            dirop_push(D_MKDIR, dir_of(path), abs_path(path), NULL, NULL);
    }
    int e = errno;
    pthread_mutex_unlock(&mu);
    errno = e;
    return rc;
}

/* Not recorded: only test clean-up removes directories. */
static int f_rmdir(const char *path)
{
    return rmdir(path);
}

static const struct nk_fs_ops fault_ops = {
    .open = f_open,
    .close = f_close,
    .write = f_write,
    .pwritev = f_pwritev,
    .pread = f_pread,
    .read = f_read,
    .fsync = f_sync,
    .fdatasync = f_sync,
    .ftruncate = f_ftruncate,
    .fallocate = f_fallocate,
    .rename = f_rename,
    .link = f_link,
    .unlink = f_unlink,
    .mkdir = f_mkdir,
    .rmdir = f_rmdir,
    .mmap = f_mmap,
};

/* ------------------------------------------------------------- power loss */

/* Undoes u (the newest remaining record of its file); keep > 0 keeps that
 * many leading bytes of a write (a torn write). */
static void undo_apply(int fd, const struct undo *u, uint64_t keep)
{
    switch (u->kind) {
    case U_WRITE: {
        uint64_t lo = u->off + keep;
        if (u->old && lo < u->old_off + u->old_len) {
            uint64_t from = NK_MAX(lo, u->old_off);
            ssize_t k = pwrite(fd, u->old + (from - u->old_off),
                               (size_t)(u->old_off + u->old_len - from), (off_t)from);
            (void)k;
        } else if (!u->old && lo < u->old_off + u->old_len) {
            uint64_t from = NK_MAX(lo, u->old_off);
            size_t n = (size_t)(u->old_off + u->old_len - from);
            uint8_t *z = nk_calloc(1, n);
            ssize_t k = pwrite(fd, z, n, (off_t)from);
            (void)k;
            free(z);
        }
        int rc = ftruncate(fd, (off_t)NK_MAX(u->old_size, lo));
        (void)rc;
        break;
    }
    case U_TRUNC: {
        int rc = ftruncate(fd, (off_t)u->old_size);
        (void)rc;
        if (u->old) {
            ssize_t k = pwrite(fd, u->old, (size_t)u->old_len, (off_t)u->old_off);
            (void)k;
        }
        break;
    }
    case U_ALLOC: {
        struct stat st;
        if (fstat(fd, &st) == 0 && (uint64_t)st.st_size > u->old_size) {
            int rc = ftruncate(fd, (off_t)u->old_size);
            (void)rc;
        }
        break;
    }
    }
}

/* rm -rf with the real system calls (the layer is off while we restore). */
static void remove_tree_raw(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *dir = opendir(path);
        if (dir) {
            struct dirent *e;
            while ((e = readdir(dir)) != NULL) {
                if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                    continue;
                char child[PATH_MAX];
                snprintf(child, sizeof child, "%s/%s", path, e->d_name);
                remove_tree_raw(child);
            }
            closedir(dir);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

static void restore_locked(void)
{
    /* file data: each file keeps a random prefix of its unsynced changes */
    for (struct ffile *f = files; f; f = f->next) {
        if (f->nu == 0)
            continue;
        size_t keep;
        uint64_t torn = 0;
        switch (nk_rng_uniform(&rng, 4)) {
        case 0:
            keep = 0;
            break;
        case 3:
            keep = (size_t)nk_rng_uniform(&rng, f->nu);
            if (f->u[keep].kind == U_WRITE && f->u[keep].len > 1)
                torn = 1 + nk_rng_uniform(&rng, f->u[keep].len - 1);
            break;
        default:
            keep = (size_t)nk_rng_uniform(&rng, f->nu + 1);
            break;
        }
        for (size_t i = f->nu; i-- > keep;)
            undo_apply(f->shadow, &f->u[i], i == keep ? torn : 0);
        undo_clear(f);
    }
    /* directory entries: a random prefix of the unsynced changes stays */
    size_t keep = nk_rng_chance(&rng, 1, 2) ? 0 : (size_t)nk_rng_uniform(&rng, ndops + 1);
    for (size_t i = ndops; i-- > keep;) {
        struct dirop *d = &dops[i];
        switch (d->kind) {
        case D_CREATE:
            unlink(d->path);
            break;
        case D_MKDIR:
            remove_tree_raw(d->path);
            break;
        case D_RENAME:
            if (rename(d->path, d->from) == 0 && d->stash) {
                if (rename(d->stash, d->path) == 0) {
                    free(d->stash);
                    d->stash = NULL;
                }
            }
            break;
        case D_UNLINK:
            if (d->stash && rename(d->stash, d->path) == 0) {
                free(d->stash);
                d->stash = NULL;
            }
            break;
        }
        dirop_free(d, true);
    }
    for (size_t i = 0; i < keep; i++)
        dirop_free(&dops[i], true);
    ndops = 0;
    /* everything on the "disk" now is durable */
    struct ffile *f = files;
    while (f) {
        struct ffile *next = f->next;
        if (f->shadow >= 0)
            close(f->shadow);
        free(f->u);
        free(f);
        f = next;
    }
    files = NULL;
    for (size_t i = 0; i < nfds; i++)
        if (fds[i].used)
            fds[i].file = NULL; /* still-open descriptors are no longer tracked */
}

void nk_faultfs_install(const char *stash, uint64_t seed)
{
    pthread_mutex_lock(&mu);
    free(stash_dir);
    stash_dir = nk_strdup(stash);
    nk_rng_seed(&rng, seed);
    dead = false;
    cut_at = 0;
    nops = ninjected = 0;
    memset(rules, 0, sizeof rules);
    pthread_mutex_unlock(&mu);
    mkdir(stash, 0755);
    nk_fs_install(&fault_ops);
}

void nk_faultfs_uninstall(void)
{
    nk_fs_install(NULL);
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < ndops; i++)
        dirop_free(&dops[i], true);
    ndops = 0;
    struct ffile *f = files;
    while (f) {
        struct ffile *next = f->next;
        if (f->shadow >= 0)
            close(f->shadow);
        undo_clear(f);
        free(f->u);
        free(f);
        f = next;
    }
    files = NULL;
    for (size_t i = 0; i < nfds; i++)
        free(fds[i].path);
    free(fds);
    fds = NULL;
    nfds = 0;
    free(dops);
    dops = NULL;
    capdops = 0;
    for (size_t i = 0; i < NK_ARRAY_LEN(rules); i++)
        free(rules[i].part);
    memset(rules, 0, sizeof rules);
    free(stash_dir);
    stash_dir = NULL;
    pthread_mutex_unlock(&mu);
}

void nk_faultfs_cut_after(uint64_t n)
{
    pthread_mutex_lock(&mu);
    cut_at = nops + (n ? n : 1);
    pthread_mutex_unlock(&mu);
}

void nk_faultfs_power_cut(void)
{
    pthread_mutex_lock(&mu);
    dead = true;
    pthread_mutex_unlock(&mu);
}

bool nk_faultfs_is_cut(void)
{
    pthread_mutex_lock(&mu);
    bool d = dead;
    pthread_mutex_unlock(&mu);
    return d;
}

void nk_faultfs_power_restore(void)
{
    pthread_mutex_lock(&mu);
    dead = true; /* a cut implied by the restore: nothing runs while we undo */
    restore_locked();
    dead = false;
    cut_at = 0;
    pthread_mutex_unlock(&mu);
}

void nk_faultfs_fail(unsigned ops, const char *path_part, int err, int count)
{
    pthread_mutex_lock(&mu);
    size_t slot = NK_ARRAY_LEN(rules);
    for (size_t i = 0; i < NK_ARRAY_LEN(rules) && slot == NK_ARRAY_LEN(rules); i++)
        if (rules[i].count != 0 && rules[i].ops == ops &&
            ((!rules[i].part && !path_part) ||
             (rules[i].part && path_part && strcmp(rules[i].part, path_part) == 0)))
            slot = i;
    for (size_t i = 0; i < NK_ARRAY_LEN(rules) && slot == NK_ARRAY_LEN(rules); i++)
        if (rules[i].count == 0)
            slot = i;
    NK_ASSERT(slot < NK_ARRAY_LEN(rules));
    free(rules[slot].part);
    rules[slot] = (struct rule){ops, path_part ? nk_strdup(path_part) : NULL, err, count};
    if (count == 0) {
        free(rules[slot].part);
        memset(&rules[slot], 0, sizeof rules[slot]);
    }
    pthread_mutex_unlock(&mu);
}

uint64_t nk_faultfs_ops(void)
{
    pthread_mutex_lock(&mu);
    uint64_t n = nops;
    pthread_mutex_unlock(&mu);
    return n;
}

uint64_t nk_faultfs_injected(void)
{
    pthread_mutex_lock(&mu);
    uint64_t n = ninjected;
    pthread_mutex_unlock(&mu);
    return n;
}
