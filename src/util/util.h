/*
 * util: the small pieces every NoriKV layer uses.
 *
 *   - nk_status: the status every fallible function returns. A non-OK status
 *     owns a heap-allocated message; the caller that receives it must release
 *     it with nk_status_free() (or hand it on). NK_OK owns nothing.
 *   - assertions that stay on in release builds (NK_ASSERT) and debug-only
 *     ones (NK_DASSERT) for checks on hot paths.
 *   - little-endian fixed-width and varint coding with bounds-checked decoders
 *     (every decoder of untrusted bytes uses these).
 *   - CRC32C (SSE4.2 when the CPU has it, table fallback) and its mask.
 *   - xxhash64 (seed 0), Jump Consistent Hash and the key -> shard routing of
 *     CONTRACT.md.
 *   - an arena (bump allocator, freed as a whole), clocks and logging.
 *
 * Thread-safety: everything here is thread-safe except a struct nk_arena,
 * which belongs to one thread at a time. Logging serializes whole lines.
 */
#ifndef NK_UTIL_H
#define NK_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ------------------------------------------------------------------ status */

/*
 * Codes 0..16 are the gRPC codes, so that the API layer maps a status onto
 * the wire without a table. Engine-only conditions use the closest gRPC code
 * and say what happened in the message (corruption is DATA_LOSS, a failed
 * system call is NK_IO_ERROR, which the API reports as INTERNAL).
 */
enum nk_code {
    NK_CODE_OK = 0,
    NK_CANCELLED = 1,
    NK_UNKNOWN = 2,
    NK_INVALID_ARGUMENT = 3,
    NK_DEADLINE_EXCEEDED = 4,
    NK_NOT_FOUND = 5,
    NK_ALREADY_EXISTS = 6,
    NK_PERMISSION_DENIED = 7,
    NK_RESOURCE_EXHAUSTED = 8,
    NK_FAILED_PRECONDITION = 9,
    NK_ABORTED = 10,
    NK_OUT_OF_RANGE = 11,
    NK_UNIMPLEMENTED = 12,
    NK_INTERNAL = 13,
    NK_UNAVAILABLE = 14,
    NK_DATA_LOSS = 15, /* corruption: checksums, torn or impossible bytes */
    NK_UNAUTHENTICATED = 16,
    NK_IO_ERROR = 100, /* a system call failed; message names file and errno */
};

typedef struct nk_status {
    enum nk_code code;
    char *msg; /* NULL when code == OK; heap-owned otherwise */
} nk_status;

#define NK_OK ((nk_status){NK_CODE_OK, NULL})

nk_status nk_status_make(enum nk_code code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Status for a failed system call: "<what>: <strerror(errno)>". */
nk_status nk_status_errno(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void nk_status_free(nk_status *s);
/* Prefixes the message with more context; keeps the code. OK stays OK. */
nk_status nk_status_wrap(nk_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *nk_code_name(enum nk_code code);

static inline bool nk_ok(nk_status s)
{
    return s.code == NK_CODE_OK;
}
static inline const char *nk_status_msg(nk_status s)
{
    return s.msg ? s.msg : "ok";
}

/* Evaluate a status expression; return it from the caller when not OK. */
#define NK_TRY(expr)                                                                               \
    do {                                                                                           \
        nk_status nk_try_s_ = (expr);                                                              \
        if (!nk_ok(nk_try_s_))                                                                     \
            return nk_try_s_;                                                                      \
    } while (0)

/* -------------------------------------------------------------- assertions */

void nk_assert_fail(const char *expr, const char *file, int line, const char *func)
    __attribute__((noreturn));
void nk_panic(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

#define NK_ASSERT(e)                                                                               \
    ((__builtin_expect(!!(e), 1)) ? (void)0 : nk_assert_fail(#e, __FILE__, __LINE__, __func__))
#ifdef NDEBUG
#define NK_DASSERT(e) ((void)0)
#else
#define NK_DASSERT(e) NK_ASSERT(e)
#endif

#define NK_LIKELY(x)   __builtin_expect(!!(x), 1)
#define NK_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define NK_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define NK_MIN(a, b) ((a) < (b) ? (a) : (b))
#define NK_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Allocation that never returns NULL: out of memory is fatal. */
void *nk_malloc(size_t n);
void *nk_calloc(size_t count, size_t n);
void *nk_realloc(void *p, size_t n);
char *nk_strdup(const char *s);
void *nk_memdup(const void *p, size_t n);

/* ------------------------------------------------------------------- bytes */

/* A borrowed byte range; never owns its memory. */
struct nk_slice {
    const uint8_t *data;
    size_t len;
};

static inline struct nk_slice nk_slice_make(const void *p, size_t n)
{
    return (struct nk_slice){(const uint8_t *)p, n};
}
static inline struct nk_slice nk_slice_str(const char *s)
{
    return (struct nk_slice){(const uint8_t *)s, strlen(s)};
}
/* memcmp order, shorter first on a common prefix. */
int nk_slice_cmp(struct nk_slice a, struct nk_slice b);
static inline bool nk_slice_eq(struct nk_slice a, struct nk_slice b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

/* A growable owned byte buffer. Bounded by its user: see nk_buf_reserve. */
struct nk_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
};

void nk_buf_init(struct nk_buf *b);
void nk_buf_free(struct nk_buf *b);
void nk_buf_reserve(struct nk_buf *b, size_t extra);
void nk_buf_append(struct nk_buf *b, const void *p, size_t n);
static inline void nk_buf_clear(struct nk_buf *b)
{
    b->len = 0;
}
void nk_buf_put_u8(struct nk_buf *b, uint8_t v);
void nk_buf_put_fixed16(struct nk_buf *b, uint16_t v);
void nk_buf_put_fixed32(struct nk_buf *b, uint32_t v);
void nk_buf_put_fixed64(struct nk_buf *b, uint64_t v);
void nk_buf_put_varint32(struct nk_buf *b, uint32_t v);
void nk_buf_put_varint64(struct nk_buf *b, uint64_t v);
/* varint length followed by the bytes */
void nk_buf_put_lenbytes(struct nk_buf *b, const void *p, size_t n);

/* ------------------------------------------------------------------ coding */

static inline void nk_enc_fixed16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void nk_enc_fixed32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4); /* x86-64 and aarch64 are little-endian */
}
static inline void nk_enc_fixed64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, 8);
}
static inline uint16_t nk_dec_fixed16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t nk_dec_fixed32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static inline uint64_t nk_dec_fixed64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static inline void nk_enc_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static inline uint16_t nk_dec_be16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}
static inline void nk_enc_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}
static inline uint64_t nk_dec_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

#define NK_VARINT32_MAX 5
#define NK_VARINT64_MAX 10
/* Encoders write at most NK_VARINT*_MAX bytes and return the count written. */
size_t nk_enc_varint32(uint8_t *p, uint32_t v);
size_t nk_enc_varint64(uint8_t *p, uint64_t v);
size_t nk_varint_len(uint64_t v);
/*
 * Decoders read from [p, limit) and return the byte after the varint, or
 * NULL when the input is truncated or the varint is overlong / overflows.
 */
const uint8_t *nk_dec_varint32(const uint8_t *p, const uint8_t *limit, uint32_t *v);
const uint8_t *nk_dec_varint64(const uint8_t *p, const uint8_t *limit, uint64_t *v);

/*
 * A bounds-checked reader over untrusted bytes. Every get fails (returns
 * false and sets r->bad) once the input runs short; callers check r->bad or
 * the return value, never read past the end.
 */
struct nk_reader {
    const uint8_t *p;
    const uint8_t *end;
    bool bad;
};
static inline void nk_reader_init(struct nk_reader *r, const void *p, size_t n)
{
    r->p = (const uint8_t *)p;
    r->end = n ? r->p + n : r->p; /* NULL + 0 is undefined behaviour in C */
    r->bad = false;
}
static inline size_t nk_reader_left(const struct nk_reader *r)
{
    return (size_t)(r->end - r->p);
}
bool nk_reader_u8(struct nk_reader *r, uint8_t *v);
bool nk_reader_fixed16(struct nk_reader *r, uint16_t *v);
bool nk_reader_fixed32(struct nk_reader *r, uint32_t *v);
bool nk_reader_fixed64(struct nk_reader *r, uint64_t *v);
bool nk_reader_varint32(struct nk_reader *r, uint32_t *v);
bool nk_reader_varint64(struct nk_reader *r, uint64_t *v);
/* n raw bytes, borrowed from the input */
bool nk_reader_bytes(struct nk_reader *r, size_t n, struct nk_slice *out);
/* varint length (<= max) then the bytes, borrowed */
bool nk_reader_lenbytes(struct nk_reader *r, size_t max, struct nk_slice *out);

/* ------------------------------------------------------------------ crc32c */

uint32_t nk_crc32c_extend(uint32_t crc, const void *data, size_t n);
static inline uint32_t nk_crc32c(const void *data, size_t n)
{
    return nk_crc32c_extend(0, data, n);
}
/* True when the hardware (SSE4.2) path is in use. */
bool nk_crc32c_hw(void);

/*
 * Stored CRCs are masked (rotated and offset, as LevelDB does) so that a CRC
 * computed over bytes that themselves contain CRCs stays well distributed.
 */
static inline uint32_t nk_crc32c_mask(uint32_t crc)
{
    return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}
static inline uint32_t nk_crc32c_unmask(uint32_t m)
{
    uint32_t rot = m - 0xa282ead8u;
    return (rot >> 17) | (rot << 15);
}

/* ------------------------------------------------------------------ hashes */

uint64_t nk_xxhash64(const void *data, size_t n); /* seed 0 */
/* Jump Consistent Hash (Lamping & Veach), bit-exact with CONTRACT.md. */
uint32_t nk_jump_hash(uint64_t key, uint32_t num_buckets);
static inline uint32_t nk_shard_for_key(const void *key, size_t n, uint32_t total_shards)
{
    return nk_jump_hash(nk_xxhash64(key, n), total_shards);
}

/* ------------------------------------------------------------------- arena */

/*
 * Bump allocator: many small allocations, one free. Blocks are 64 KiB (or
 * the size of a larger request); memory is released only by nk_arena_free.
 */
struct nk_arena_block;
struct nk_arena {
    uint8_t *ptr;
    size_t left;
    struct nk_arena_block *blocks;
    size_t usage; /* bytes obtained from malloc, including block headers */
};

void nk_arena_init(struct nk_arena *a);
void nk_arena_free(struct nk_arena *a);
void *nk_arena_alloc(struct nk_arena *a, size_t n);         /* unaligned */
void *nk_arena_alloc_aligned(struct nk_arena *a, size_t n); /* 8-byte aligned */
static inline size_t nk_arena_usage(const struct nk_arena *a)
{
    return a->usage;
}

/* ------------------------------------------------------------------ clocks */

uint64_t nk_mono_ns(void); /* CLOCK_MONOTONIC */
static inline uint64_t nk_mono_us(void)
{
    return nk_mono_ns() / 1000;
}
static inline uint64_t nk_mono_ms(void)
{
    return nk_mono_ns() / 1000000;
}
uint64_t nk_wall_ms(void); /* CLOCK_REALTIME, ms since the Unix epoch */
void nk_sleep_us(uint64_t us);

/* ----------------------------------------------------------------- logging */

enum nk_log_level { NK_LOG_DEBUG = 0, NK_LOG_INFO = 1, NK_LOG_WARN = 2, NK_LOG_ERROR = 3 };

/* Lines go to stderr as "<iso time> <LEVEL> <module>: <message>". */
void nk_log_set_level(enum nk_log_level level);
enum nk_log_level nk_log_get_level(void);
/* Parses "debug", "info", "warn", "error"; false on anything else. */
bool nk_log_parse_level(const char *s, enum nk_log_level *out);
void nk_log(enum nk_log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define NK_DEBUG(mod, ...)                                                                         \
    do {                                                                                           \
        if (NK_UNLIKELY(nk_log_get_level() <= NK_LOG_DEBUG))                                       \
            nk_log(NK_LOG_DEBUG, mod, __VA_ARGS__);                                                \
    } while (0)
#define NK_INFO(mod, ...)  nk_log(NK_LOG_INFO, mod, __VA_ARGS__)
#define NK_WARN(mod, ...)  nk_log(NK_LOG_WARN, mod, __VA_ARGS__)
#define NK_ERROR(mod, ...) nk_log(NK_LOG_ERROR, mod, __VA_ARGS__)

/* -------------------------------------------------------------------- files */

/* fsync a directory so that a create/rename/unlink in it is durable. */
nk_status nk_fsync_dir(const char *dir);
/* mkdir -p */
nk_status nk_mkdirs(const char *path, int mode);
/* Write a whole file atomically: temp file, fsync, rename, fsync dir. */
nk_status nk_write_file_atomic(const char *path, const void *data, size_t n);
/* Read a whole file (at most max bytes, else OUT_OF_RANGE); *out is malloc'd. */
nk_status nk_read_file(const char *path, size_t max, uint8_t **out, size_t *n);
/* rm -rf; missing is fine. */
nk_status nk_remove_tree(const char *path);

/* ------------------------------------------------------------ file layer */

/*
 * Every file operation of wal/, sstable/, lsm/ and raftlog/ (and the file
 * helpers above) goes through this table, so that a test can put a
 * fault-injecting layer (nk_faultfs_*, below) between the engine and the
 * disk. The default table is the plain system calls; calling through one
 * pointer costs nothing next to a system call. Functions follow the system
 * calls' conventions: -1 (or MAP_FAILED) with errno set on failure.
 *
 * nk_fs_install must run before any file is opened through the layer and
 * not concurrently with file operations (tests install at start-up);
 * NULL restores the system calls.
 */
struct iovec;
struct nk_fs_ops {
    int (*open)(const char *path, int flags, int mode);
    int (*close)(int fd);
    long (*write)(int fd, const void *buf, size_t n);
    long (*pwritev)(int fd, const struct iovec *iov, int cnt, int64_t off);
    long (*pread)(int fd, void *buf, size_t n, int64_t off);
    long (*read)(int fd, void *buf, size_t n);
    int (*fsync)(int fd);
    int (*fdatasync)(int fd);
    int (*ftruncate)(int fd, int64_t len);
    int (*fallocate)(int fd, int mode, int64_t off, int64_t len);
    int (*rename)(const char *from, const char *to);
    int (*link)(const char *from, const char *to);
    int (*unlink)(const char *path);
    int (*mkdir)(const char *path, int mode);
    int (*rmdir)(const char *path);
    void *(*mmap)(size_t len, int prot, int flags, int fd, int64_t off);
};
extern const struct nk_fs_ops *nk_fs;
void nk_fs_install(const struct nk_fs_ops *ops);

static inline int nk_fs_open(const char *path, int flags, int mode)
{
    return nk_fs->open(path, flags, mode);
}
static inline int nk_fs_close(int fd)
{
    return nk_fs->close(fd);
}
static inline long nk_fs_write(int fd, const void *buf, size_t n)
{
    return nk_fs->write(fd, buf, n);
}
static inline long nk_fs_pwritev(int fd, const struct iovec *iov, int cnt, int64_t off)
{
    return nk_fs->pwritev(fd, iov, cnt, off);
}
static inline long nk_fs_pread(int fd, void *buf, size_t n, int64_t off)
{
    return nk_fs->pread(fd, buf, n, off);
}
static inline long nk_fs_read(int fd, void *buf, size_t n)
{
    return nk_fs->read(fd, buf, n);
}
static inline int nk_fs_fsync(int fd)
{
    return nk_fs->fsync(fd);
}
static inline int nk_fs_fdatasync(int fd)
{
    return nk_fs->fdatasync(fd);
}
static inline int nk_fs_ftruncate(int fd, int64_t len)
{
    return nk_fs->ftruncate(fd, len);
}
static inline int nk_fs_fallocate(int fd, int mode, int64_t off, int64_t len)
{
    return nk_fs->fallocate(fd, mode, off, len);
}
static inline int nk_fs_rename(const char *from, const char *to)
{
    return nk_fs->rename(from, to);
}
static inline int nk_fs_link(const char *from, const char *to)
{
    return nk_fs->link(from, to);
}
static inline int nk_fs_unlink(const char *path)
{
    return nk_fs->unlink(path);
}
static inline int nk_fs_mkdir(const char *path, int mode)
{
    return nk_fs->mkdir(path, mode);
}
static inline int nk_fs_rmdir(const char *path)
{
    return nk_fs->rmdir(path);
}
static inline void *nk_fs_mmap(size_t len, int prot, int flags, int fd, int64_t off)
{
    return nk_fs->mmap(len, prot, flags, fd, off);
}

/*
 * The fault-injecting layer (tests only; in the spirit of LevelDB's
 * fault_injection_test and SQLite's crash tests). Installed with
 * nk_faultfs_install(), it performs every operation on the real file system
 * (which then plays the OS page cache) and remembers, per file, every change
 * not yet made durable by fsync/fdatasync, and per directory every create,
 * link, mkdir, rename and unlink not yet made durable by an fsync of that directory.
 * fsync itself does no real I/O (the durable state is simulated), so tests
 * run fast.
 *
 * A power cut (nk_faultfs_power_cut) first makes every later operation fail
 * with EIO (the machine is off: nothing more reaches the disk), and once the
 * caller has closed what it had open, nk_faultfs_power_restore() rolls the
 * files back to what a disk would hold: each file keeps its synced state
 * plus, chosen at random, a prefix of its unsynced writes (possibly torn
 * inside the last kept write), and directory changes since the directory's
 * last fsync revert (created files disappear, unlinked ones come back,
 * renames undo). Then all state counts as durable and operations work again.
 *
 * nk_faultfs_cut_after(n) arms a cut that fires on the n-th mutating
 * operation from now (that operation does not happen). Errors can be
 * injected: nk_faultfs_fail(ops, path_part, err, count) makes the next
 * `count` (-1: every) operations of kinds `ops` on paths containing
 * path_part (NULL: any) fail with errno err; count 0 clears the rule.
 * Thread-safe: one lock orders every operation, so a cut is atomic.
 */
enum {
    NK_FAULT_OPEN_CREATE = 1 << 0, /* open with O_CREAT of a file that does not exist */
    NK_FAULT_WRITE = 1 << 1,       /* write, pwritev */
    NK_FAULT_SYNC = 1 << 2,        /* fsync, fdatasync (files and directories) */
    NK_FAULT_TRUNCATE = 1 << 3,
    NK_FAULT_FALLOCATE = 1 << 4,
    NK_FAULT_RENAME = 1 << 5, /* rename, link */
    NK_FAULT_UNLINK = 1 << 6,
    NK_FAULT_MKDIR = 1 << 7,
    NK_FAULT_READ = 1 << 8, /* pread, read, mmap */
    NK_FAULT_ALL = 0x1ff,
};
/* stash_dir: an empty directory on the same file system as the tested files,
 * where unlinked or replaced files are kept until their removal is durable. */
void nk_faultfs_install(const char *stash_dir, uint64_t seed);
void nk_faultfs_uninstall(void);
void nk_faultfs_cut_after(uint64_t n_mutating_ops);
void nk_faultfs_power_cut(void);
bool nk_faultfs_is_cut(void);
void nk_faultfs_power_restore(void);
void nk_faultfs_fail(unsigned ops, const char *path_part, int err, int count);
/* Mutating operations performed so far, and injected failures so far. */
uint64_t nk_faultfs_ops(void);
uint64_t nk_faultfs_injected(void);

/* ---------------------------------------------------------------- random */

/* xorshift-family PRNG for tests and jitter; not for cryptography. */
struct nk_rng {
    uint64_t s[2];
};
void nk_rng_seed(struct nk_rng *r, uint64_t seed);
uint64_t nk_rng_next(struct nk_rng *r);
/* uniform in [0, n); n > 0 */
uint64_t nk_rng_uniform(struct nk_rng *r, uint64_t n);
/* true with probability num/den */
static inline bool nk_rng_chance(struct nk_rng *r, uint32_t num, uint32_t den)
{
    return nk_rng_uniform(r, den) < num;
}

#endif /* NK_UTIL_H */
