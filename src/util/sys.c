/* sys.c: clocks, logging and file helpers. */
#include "util/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

uint64_t nk_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

uint64_t nk_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000ULL + (uint64_t)ts.tv_nsec / 1000000ULL;
}

void nk_sleep_us(uint64_t us)
{
    struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static volatile int log_level = NK_LOG_INFO;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

void nk_log_set_level(enum nk_log_level level)
{
    log_level = level;
}

enum nk_log_level nk_log_get_level(void)
{
    return (enum nk_log_level)log_level;
}

bool nk_log_parse_level(const char *s, enum nk_log_level *out)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (enum nk_log_level)i;
            return true;
        }
    }
    return false;
}

void nk_log(enum nk_log_level level, const char *module, const char *fmt, ...)
{
    if ((int)level < log_level)
        return;
    static const char *names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    char line[2048];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, names[level], module);
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < sizeof line)
        vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&log_mu);
    fprintf(stderr, "%s\n", line);
    pthread_mutex_unlock(&log_mu);
}

nk_status nk_fsync_dir(const char *dir)
{
    int fd = nk_fs_open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (fd < 0)
        return nk_status_errno(errno, "open directory %s", dir);
    if (nk_fs_fsync(fd) != 0) {
        int e = errno;
        nk_fs_close(fd);
        return nk_status_errno(e, "fsync directory %s", dir);
    }
    nk_fs_close(fd);
    return NK_OK;
}

/*
 * mkdir -p. A directory it creates is made durable in its parent (fsync of
 * the parent), so that what is later created inside it cannot vanish with
 * it at a power cut.
 */
nk_status nk_mkdirs(const char *path, int mode)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf)
        return nk_status_make(NK_INVALID_ARGUMENT, "path too long or empty: '%s'", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (nk_fs_mkdir(buf, mode) == 0) {
                char parent[4096];
                memcpy(parent, buf, i + 1);
                char *slash = strrchr(parent, '/');
                if (!slash)
                    strcpy(parent, ".");
                else if (slash == parent)
                    parent[1] = '\0';
                else
                    *slash = '\0';
                NK_TRY(nk_fsync_dir(parent));
            } else if (errno != EEXIST) {
                return nk_status_errno(errno, "mkdir %s", buf);
            }
            buf[i] = c;
        }
    }
    struct stat st;
    if (stat(path, &st) != 0)
        return nk_status_errno(errno, "stat %s", path);
    if (!S_ISDIR(st.st_mode))
        return nk_status_make(NK_FAILED_PRECONDITION, "%s exists and is not a directory", path);
    return NK_OK;
}

static nk_status write_all(int fd, const char *path, const void *data, size_t n)
{
    const uint8_t *p = data;
    while (n) {
        ssize_t w = nk_fs_write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return nk_status_errno(errno, "write %s", path);
        }
        p += w;
        n -= (size_t)w;
    }
    return NK_OK;
}

nk_status nk_write_file_atomic(const char *path, const void *data, size_t n)
{
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return nk_status_make(NK_INVALID_ARGUMENT, "path too long: %s", path);
    int fd = nk_fs_open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return nk_status_errno(errno, "create %s", tmp);
    nk_status s = write_all(fd, tmp, data, n);
    if (nk_ok(s) && nk_fs_fdatasync(fd) != 0)
        s = nk_status_errno(errno, "fdatasync %s", tmp);
    nk_fs_close(fd);
    if (nk_ok(s) && nk_fs_rename(tmp, path) != 0)
        s = nk_status_errno(errno, "rename %s to %s", tmp, path);
    if (!nk_ok(s)) {
        nk_fs_unlink(tmp);
        return s;
    }
    char dir[4200];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        dir[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        strcpy(dir, ".");
    return nk_fsync_dir(dir);
}

nk_status nk_read_file(const char *path, size_t max, uint8_t **out, size_t *n)
{
    int fd = nk_fs_open(path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0)
        return nk_status_errno(errno, "open %s", path);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        nk_fs_close(fd);
        return nk_status_errno(e, "stat %s", path);
    }
    if ((uint64_t)st.st_size > max) {
        nk_fs_close(fd);
        return nk_status_make(NK_OUT_OF_RANGE, "%s is %lld bytes, more than the limit of %zu",
                              path, (long long)st.st_size, max);
    }
    size_t size = (size_t)st.st_size;
    uint8_t *buf = nk_malloc(size + 1);
    size_t got = 0;
    while (got < size) {
        ssize_t r = nk_fs_read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = r < 0 ? errno : EIO;
            free(buf);
            nk_fs_close(fd);
            return nk_status_errno(e, "read %s", path);
        }
        got += (size_t)r;
    }
    nk_fs_close(fd);
    buf[size] = 0; /* convenient for text files; not counted in *n */
    *out = buf;
    *n = size;
    return NK_OK;
}

nk_status nk_remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? NK_OK : nk_status_errno(errno, "stat %s", path);
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (!d)
            return nk_status_errno(errno, "opendir %s", path);
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char child[4096];
            snprintf(child, sizeof child, "%s/%s", path, e->d_name);
            nk_status s = nk_remove_tree(child);
            if (!nk_ok(s)) {
                closedir(d);
                return s;
            }
        }
        closedir(d);
        if (nk_fs_rmdir(path) != 0)
            return nk_status_errno(errno, "rmdir %s", path);
        return NK_OK;
    }
    if (nk_fs_unlink(path) != 0)
        return nk_status_errno(errno, "unlink %s", path);
    return NK_OK;
}
