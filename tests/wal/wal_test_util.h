/*
 * wal_test_util.h: helpers shared by the WAL tests: deterministic payloads,
 * reading a whole log back, and poking at segment files.
 */
#ifndef NK_WAL_TEST_UTIL_H
#define NK_WAL_TEST_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "wal/wal.h"
#include "wal/wal_internal.h"

/* Payload of record `id`: `len` bytes that depend on id, so a swap or a stale copy shows. */
static inline void wt_payload(uint64_t id, size_t len, uint8_t *out)
{
    struct nk_rng r;
    nk_rng_seed(&r, id * 0x9e3779b97f4a7c15ull + len);
    for (size_t i = 0; i < len; i++)
        out[i] = (uint8_t)nk_rng_next(&r);
    if (len >= 8)
        nk_enc_fixed64(out, id);
}

static inline bool wt_payload_ok(uint64_t id, struct nk_slice p)
{
    uint8_t *want = nk_malloc(p.len ? p.len : 1);
    wt_payload(id, p.len, want);
    bool ok = p.len == 0 || memcmp(want, p.data, p.len) == 0;
    free(want);
    return ok;
}

/* A record as read back. */
struct wt_rec {
    uint8_t type;
    uint8_t *data;
    size_t len;
    struct wal_pos pos;
};

struct wt_log {
    struct wt_rec *recs;
    size_t n, cap;
};

static inline void wt_log_free(struct wt_log *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->recs[i].data);
    free(l->recs);
    memset(l, 0, sizeof *l);
}

/* Reads every record from `from` to the end. */
static inline nk_status wt_read_all(struct wal *w, struct wal_pos from, struct wt_log *out)
{
    memset(out, 0, sizeof *out);
    struct wal_iter *it;
    NK_TRY(wal_iter_open(w, from, &it));
    for (;;) {
        bool has;
        uint8_t type;
        struct nk_slice p;
        struct wal_pos pos;
        nk_status s = wal_iter_next(it, &has, &type, &p, &pos);
        if (!nk_ok(s)) {
            wal_iter_close(it);
            wt_log_free(out);
            return s;
        }
        if (!has)
            break;
        if (out->n == out->cap) {
            out->cap = out->cap ? out->cap * 2 : 64;
            out->recs = nk_realloc(out->recs, out->cap * sizeof *out->recs);
        }
        out->recs[out->n++] = (struct wt_rec){type, nk_memdup(p.data, p.len ? p.len : 1), p.len, pos};
    }
    wal_iter_close(it);
    return NK_OK;
}

static inline void wt_seg_path(const char *dir, uint64_t seg, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%020" PRIu64 ".wal", dir, seg);
}

static inline bool wt_read_file(const char *path, uint8_t **data, size_t *n)
{
    nk_status s = nk_read_file(path, (size_t)1 << 30, data, n);
    bool ok = nk_ok(s);
    nk_status_free(&s);
    return ok;
}

static inline bool wt_write_file(const char *path, const void *data, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return false;
    bool ok = write(fd, data, n) == (ssize_t)n;
    close(fd);
    return ok;
}

/* XORs one byte of a file in place. */
static inline bool wt_flip_byte(const char *path, uint64_t off, uint8_t mask)
{
    int fd = open(path, O_RDWR);
    if (fd < 0)
        return false;
    uint8_t b;
    bool ok = pread(fd, &b, 1, (off_t)off) == 1;
    b ^= mask;
    ok = ok && pwrite(fd, &b, 1, (off_t)off) == 1;
    close(fd);
    return ok;
}

#endif /* NK_WAL_TEST_UTIL_H */
