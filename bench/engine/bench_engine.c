/*
 * bench_engine: nori-lsm against RocksDB and LevelDB, db_bench style, in one
 * run with the same settings: no compression, WAL on without fsync, equal
 * write buffer, 10-bit bloom filters, equal block cache. Every other knob is
 * each engine's default.
 *
 *   fillseq     N puts in key order into a new database
 *   fillrandom  N puts of a random permutation of the keys into a new database
 *   overwrite   N puts of uniformly random keys into the fillrandom database
 *   readrandom  N gets of uniformly random (present) keys
 *   readseq     one pass of an iterator over the whole database
 *   seekrandom  N/10 seeks to random keys, reading the key found
 *
 * Each engine runs in its own child process (fresh directory, own memory and
 * threads). Write amplification = bytes the process wrote to files (wchar of
 * /proc/self/io, from the start of fillrandom to the end of the run, so
 * deferred compactions count) / user bytes of fillrandom + overwrite. Size on
 * disk: allocated blocks of the database directory at the end.
 *
 * With --repeat=R the engines run R times in turn (nori, RocksDB, LevelDB,
 * nori, ...) and each figure is the best of its R runs: on a shared machine
 * this filters out moments when other processes took the CPU.
 *
 * Read paths are compared like with like: every engine runs in each table
 * read mode it offers. nori-lsm and RocksDB run twice, with tables read
 * through a read-only mapping (nori use_mmap_reads, RocksDB allow_mmap_reads)
 * and with pread through the block cache; LevelDB 1.23 maps tables itself (up
 * to 1000 files on 64-bit) and its C API has no switch, so it runs once, in
 * its mmap mode. The ratio columns pair nori's mmap run with the faster of
 * the other mmap runs and nori's pread run with RocksDB's pread run. Each
 * engine prints the options it actually runs with (read back from the engine
 * where its API allows) before the table.
 *
 * Usage: bench_engine [--num=N] [--dir=PATH]
 *                     [--engines=nori,nori-pread,rocksdb,rocksdb-mmap,leveldb]
 *                     [--write_buffer=BYTES] [--cache=BYTES] [--repeat=R]
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <inttypes.h>
#include <leveldb/c.h>
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lsm/lsm.h"

#define KEY_LEN 16
#define VALUE_LEN 100
#define NBENCH 6

static const char *bench_names[NBENCH] = {"fillseq",    "fillrandom", "overwrite",
                                          "readrandom", "readseq",    "seekrandom"};
static uint64_t num = 1000000;
static uint64_t write_buffer = 8u << 20;
static uint64_t cache_bytes = 64u << 20;
static const char *base_dir = "/tmp/nk-bench-engine";

/* ----------------------------------------------------------- engine shim */

struct engine {
    const char *key;  /* --engines name */
    const char *name; /* column title */
    bool mmap;        /* tables read through a mapping */
    void *(*open)(const char *dir);
    void (*close)(void *db);
    void (*put)(void *db, const char *k, const char *v);
    bool (*get)(void *db, const char *k);
    void *(*iter)(void *db);
    void (*iter_free)(void *it);
    void (*seek_first)(void *it);
    void (*seek)(void *it, const char *k);
    bool (*valid)(void *it);
    void (*next)(void *it);
    size_t (*key_len)(void *it); /* touches the key */
    void (*describe)(void *db);  /* optional: level summary to stderr */
    void (*print_options)(bool mmap);
};

static bool use_mmap; /* the variant the child process runs */

static void die(const char *what, const char *err)
{
    fprintf(stderr, "bench_engine: %s: %s\n", what, err ? err : "?");
    exit(1);
}

/* nori-lsm */
static void *nori_open(const char *dir)
{
    struct lsm_options o;
    lsm_options_default(&o);
    o.write_buffer_size = write_buffer;
    o.block_cache_bytes = cache_bytes;
    o.bloom_bits_per_key = 10;
    o.compression = 0;
    o.wal_sync = LSM_WAL_SYNC_OS;
    o.use_mmap_reads = use_mmap;
    struct lsm_db *db;
    nk_status s = lsm_open(dir, &o, &db);
    if (!nk_ok(s))
        die("nori open", nk_status_msg(s));
    return db;
}
static void nori_print_options(bool mmap)
{
    struct lsm_options o;
    lsm_options_default(&o);
    printf("  nori-lsm%s: use_mmap_reads=%d write_buffer_size=%" PRIu64 " max_immutable=%u "
           "block_cache_bytes=%" PRIu64 " block_size=%u bloom_bits_per_key=10 compression=none "
           "wal_sync=os l0_compaction_trigger=%u l0_stop_trigger=%u max_bytes_base=%" PRIu64
           " level_ratio=%u target_file_size=%" PRIu64 "\n",
           mmap ? " (mmap)" : " (pread)", mmap, write_buffer, o.max_immutable, cache_bytes,
           o.block_size, o.l0_compaction_trigger, o.l0_stop_trigger, o.max_bytes_base,
           o.level_ratio, o.target_file_size);
}

static void nori_close(void *db)
{
    lsm_close(db);
}
static void nori_put(void *db, const char *k, const char *v)
{
    nk_status s = lsm_put(db, NULL, nk_slice_make(k, KEY_LEN), nk_slice_make(v, VALUE_LEN), 0);
    if (!nk_ok(s))
        die("nori put", nk_status_msg(s));
}
static struct nk_buf nori_val;
static bool nori_get(void *db, const char *k)
{
    bool found;
    nk_status s = lsm_get(db, NULL, nk_slice_make(k, KEY_LEN), &nori_val, &found, NULL);
    if (!nk_ok(s))
        die("nori get", nk_status_msg(s));
    return found;
}
static void *nori_iter(void *db)
{
    struct lsm_iter *it;
    nk_status s = lsm_iter_new(db, NULL, &it);
    if (!nk_ok(s))
        die("nori iter", nk_status_msg(s));
    return it;
}
static void nori_iter_free(void *it)
{
    lsm_iter_free(it);
}
static void nori_seek_first(void *it)
{
    lsm_iter_seek_first(it);
}
static void nori_seek(void *it, const char *k)
{
    lsm_iter_seek(it, nk_slice_make(k, KEY_LEN));
}
static bool nori_valid(void *it)
{
    return lsm_iter_valid(it);
}
static void nori_next(void *it)
{
    lsm_iter_next(it);
}
static size_t nori_key_len(void *it)
{
    return lsm_iter_key(it).len + lsm_iter_value(it).len;
}
static void nori_describe(void *db)
{
    struct lsm_stats st;
    lsm_get_stats(db, &st);
    fprintf(stderr, "  nori-lsm levels:");
    for (int l = 0; l < LSM_NUM_LEVELS; l++)
        if (st.level[l].files)
            fprintf(stderr, " L%d %u files %.1f MiB;", l, st.level[l].files,
                    (double)st.level[l].bytes / 1048576.0);
    fprintf(stderr, " flushes %" PRIu64 ", compactions %" PRIu64 ", moves %" PRIu64
                    ", stalls %" PRIu64 ", engine write-amp %.2f\n",
            st.flushes, st.compactions, st.trivial_moves, st.write_stalls,
            st.write_amplification);
}

/* RocksDB */
struct rdb {
    rocksdb_t *db;
    rocksdb_options_t *o;
    rocksdb_writeoptions_t *wo;
    rocksdb_readoptions_t *ro;
    rocksdb_cache_t *cache;
    rocksdb_block_based_table_options_t *t;
};
static void *rocks_open(const char *dir)
{
    struct rdb *r = calloc(1, sizeof *r);
    r->o = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(r->o, 1);
    rocksdb_options_set_compression(r->o, rocksdb_no_compression);
    rocksdb_options_set_write_buffer_size(r->o, write_buffer);
    rocksdb_options_set_allow_mmap_reads(r->o, use_mmap);
    r->t = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_filter_policy(r->t, rocksdb_filterpolicy_create_bloom(10));
    r->cache = rocksdb_cache_create_lru(cache_bytes);
    rocksdb_block_based_options_set_block_cache(r->t, r->cache);
    rocksdb_options_set_block_based_table_factory(r->o, r->t);
    r->wo = rocksdb_writeoptions_create(); /* sync = false, WAL on */
    r->ro = rocksdb_readoptions_create();
    char *err = NULL;
    r->db = rocksdb_open(r->o, dir, &err);
    if (err)
        die("rocksdb open", err);
    return r;
}
static void rocks_print_options(bool mmap)
{
    /* the options as the bench sets them, read back from RocksDB */
    bool saved = use_mmap;
    use_mmap = mmap;
    struct rdb r;
    memset(&r, 0, sizeof r);
    r.o = rocksdb_options_create();
    rocksdb_options_set_compression(r.o, rocksdb_no_compression);
    rocksdb_options_set_write_buffer_size(r.o, write_buffer);
    rocksdb_options_set_allow_mmap_reads(r.o, use_mmap);
    printf("  RocksDB%s: allow_mmap_reads=%d write_buffer_size=%zu max_write_buffer_number=%d "
           "block_cache=%" PRIu64 " (LRU) block_size=4096 (default) bloom=10 bits/key "
           "compression=%d (none) WAL on, sync=false level0_file_num_compaction_trigger=%d "
           "level0_stop_writes_trigger=%d max_bytes_for_level_base=%" PRIu64
           " max_bytes_for_level_multiplier=%.0f max_open_files=%d max_background_jobs=%d\n",
           mmap ? " (mmap)" : " (pread)", rocksdb_options_get_allow_mmap_reads(r.o),
           rocksdb_options_get_write_buffer_size(r.o),
           rocksdb_options_get_max_write_buffer_number(r.o), cache_bytes,
           rocksdb_options_get_compression(r.o),
           rocksdb_options_get_level0_file_num_compaction_trigger(r.o),
           rocksdb_options_get_level0_stop_writes_trigger(r.o),
           (uint64_t)rocksdb_options_get_max_bytes_for_level_base(r.o),
           rocksdb_options_get_max_bytes_for_level_multiplier(r.o),
           rocksdb_options_get_max_open_files(r.o), rocksdb_options_get_max_background_jobs(r.o));
    rocksdb_options_destroy(r.o);
    use_mmap = saved;
}

static void rocks_close(void *p)
{
    struct rdb *r = p;
    rocksdb_close(r->db);
    rocksdb_writeoptions_destroy(r->wo);
    rocksdb_readoptions_destroy(r->ro);
    rocksdb_options_destroy(r->o);
    rocksdb_block_based_options_destroy(r->t);
    rocksdb_cache_destroy(r->cache);
    free(r);
}
static void rocks_put(void *p, const char *k, const char *v)
{
    struct rdb *r = p;
    char *err = NULL;
    rocksdb_put(r->db, r->wo, k, KEY_LEN, v, VALUE_LEN, &err);
    if (err)
        die("rocksdb put", err);
}
static bool rocks_get(void *p, const char *k)
{
    struct rdb *r = p;
    char *err = NULL;
    rocksdb_pinnableslice_t *v = rocksdb_get_pinned(r->db, r->ro, k, KEY_LEN, &err);
    if (err)
        die("rocksdb get", err);
    bool found = v != NULL;
    if (v) {
        size_t n;
        volatile const char *d = rocksdb_pinnableslice_value(v, &n);
        (void)d;
        rocksdb_pinnableslice_destroy(v);
    }
    return found;
}
static void *rocks_iter(void *p)
{
    struct rdb *r = p;
    return rocksdb_create_iterator(r->db, r->ro);
}
static void rocks_iter_free(void *it)
{
    rocksdb_iter_destroy(it);
}
static void rocks_seek_first(void *it)
{
    rocksdb_iter_seek_to_first(it);
}
static void rocks_seek(void *it, const char *k)
{
    rocksdb_iter_seek(it, k, KEY_LEN);
}
static bool rocks_valid(void *it)
{
    return rocksdb_iter_valid(it);
}
static void rocks_next(void *it)
{
    rocksdb_iter_next(it);
}
static size_t rocks_key_len(void *it)
{
    size_t k, v;
    rocksdb_iter_key(it, &k);
    rocksdb_iter_value(it, &v);
    return k + v;
}

/* LevelDB */
struct ldb {
    leveldb_t *db;
    leveldb_options_t *o;
    leveldb_writeoptions_t *wo;
    leveldb_readoptions_t *ro;
    leveldb_cache_t *cache;
    leveldb_filterpolicy_t *fp;
};
static void *level_open(const char *dir)
{
    struct ldb *l = calloc(1, sizeof *l);
    l->o = leveldb_options_create();
    leveldb_options_set_create_if_missing(l->o, 1);
    leveldb_options_set_compression(l->o, leveldb_no_compression);
    leveldb_options_set_write_buffer_size(l->o, write_buffer);
    l->fp = leveldb_filterpolicy_create_bloom(10);
    leveldb_options_set_filter_policy(l->o, l->fp);
    l->cache = leveldb_cache_create_lru(cache_bytes);
    leveldb_options_set_cache(l->o, l->cache);
    l->wo = leveldb_writeoptions_create();
    l->ro = leveldb_readoptions_create();
    char *err = NULL;
    l->db = leveldb_open(l->o, dir, &err);
    if (err)
        die("leveldb open", err);
    return l;
}
static void level_print_options(bool mmap)
{
    (void)mmap;
    printf("  LevelDB (mmap): tables mapped by LevelDB itself (up to 1000 files on 64-bit; no "
           "switch in its C API) write_buffer_size=%" PRIu64 " block_cache=%" PRIu64
           " (LRU) bloom=10 bits/key compression=none WAL on, sync=false; defaults: "
           "block_size=4096 max_file_size=2 MiB max_open_files=1000 L0 compaction at 4 files, "
           "stop at 12\n",
           write_buffer, cache_bytes);
}

static void level_close(void *p)
{
    struct ldb *l = p;
    leveldb_close(l->db);
    leveldb_writeoptions_destroy(l->wo);
    leveldb_readoptions_destroy(l->ro);
    leveldb_options_destroy(l->o);
    leveldb_cache_destroy(l->cache);
    leveldb_filterpolicy_destroy(l->fp);
    free(l);
}
static void level_put(void *p, const char *k, const char *v)
{
    struct ldb *l = p;
    char *err = NULL;
    leveldb_put(l->db, l->wo, k, KEY_LEN, v, VALUE_LEN, &err);
    if (err)
        die("leveldb put", err);
}
static bool level_get(void *p, const char *k)
{
    struct ldb *l = p;
    char *err = NULL;
    size_t n;
    char *v = leveldb_get(l->db, l->ro, k, KEY_LEN, &n, &err);
    if (err)
        die("leveldb get", err);
    bool found = v != NULL;
    leveldb_free(v);
    return found;
}
static void *level_iter(void *p)
{
    struct ldb *l = p;
    return leveldb_create_iterator(l->db, l->ro);
}
static void level_iter_free(void *it)
{
    leveldb_iter_destroy(it);
}
static void level_seek_first(void *it)
{
    leveldb_iter_seek_to_first(it);
}
static void level_seek(void *it, const char *k)
{
    leveldb_iter_seek(it, k, KEY_LEN);
}
static bool level_valid(void *it)
{
    return leveldb_iter_valid(it);
}
static void level_next(void *it)
{
    leveldb_iter_next(it);
}
static size_t level_key_len(void *it)
{
    size_t k, v;
    leveldb_iter_key(it, &k);
    leveldb_iter_value(it, &v);
    return k + v;
}

static const struct engine engines[] = {
    {"nori", "nori-lsm mmap", true, nori_open, nori_close, nori_put, nori_get, nori_iter,
     nori_iter_free, nori_seek_first, nori_seek, nori_valid, nori_next, nori_key_len,
     nori_describe, nori_print_options},
    {"nori-pread", "nori-lsm pread", false, nori_open, nori_close, nori_put, nori_get, nori_iter,
     nori_iter_free, nori_seek_first, nori_seek, nori_valid, nori_next, nori_key_len,
     nori_describe, nori_print_options},
    {"rocksdb", "RocksDB pread", false, rocks_open, rocks_close, rocks_put, rocks_get, rocks_iter,
     rocks_iter_free, rocks_seek_first, rocks_seek, rocks_valid, rocks_next, rocks_key_len, NULL,
     rocks_print_options},
    {"rocksdb-mmap", "RocksDB mmap", true, rocks_open, rocks_close, rocks_put, rocks_get,
     rocks_iter, rocks_iter_free, rocks_seek_first, rocks_seek, rocks_valid, rocks_next,
     rocks_key_len, NULL, rocks_print_options},
    {"leveldb", "LevelDB mmap", true, level_open, level_close, level_put, level_get, level_iter,
     level_iter_free, level_seek_first, level_seek, level_valid, level_next, level_key_len, NULL,
     level_print_options},
};
#define NENGINES 5
#define E_NORI 0
#define E_NORI_PREAD 1
#define E_ROCKS_PREAD 2

/* Whether name is one of the comma-separated words of list. */
static bool listed(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0)
            return true;
        if (!end)
            break;
        p = end + 1;
    }
    return false;
}

/* ----------------------------------------------------------------- runner */

struct result {
    double secs[NBENCH];
    double cpu[NBENCH]; /* user + system seconds of all the process's threads */
    uint64_t ops[NBENCH];
    double write_amp;
    uint64_t disk_bytes;
    uint64_t found_misses;
};

static uint64_t wchar(void)
{
    FILE *f = fopen("/proc/self/io", "r");
    if (!f)
        return 0;
    char line[128];
    uint64_t v = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "wchar: %" SCNu64, &v) == 1)
            break;
    fclose(f);
    return v;
}

static uint64_t dir_blocks(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return 0;
    uint64_t total = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        struct stat st;
        if (lstat(p, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode))
            total += dir_blocks(p);
        else
            total += (uint64_t)st.st_blocks * 512;
    }
    closedir(d);
    return total;
}

static void rm_rf(const char *path)
{
    nk_status s = nk_remove_tree(path);
    nk_status_free(&s);
}

static double now_s(void)
{
    return (double)nk_mono_ns() / 1e9;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void make_key(char *k, uint64_t i)
{
    /* 16 decimal digits, like db_bench's keys */
    for (int d = KEY_LEN - 1; d >= 0; d--) {
        k[d] = (char)('0' + i % 10);
        i /= 10;
    }
}

static void run_engine(const struct engine *e, const char *dir, struct result *res)
{
    char key[KEY_LEN];
    char *values = malloc(VALUE_LEN + 4096);
    struct nk_rng r;
    nk_rng_seed(&r, 301);
    for (int i = 0; i < VALUE_LEN + 4096; i++)
        values[i] = (char)(' ' + nk_rng_uniform(&r, 95));
    uint64_t *perm = malloc(num * sizeof *perm);
    for (uint64_t i = 0; i < num; i++)
        perm[i] = i;
    for (uint64_t i = num; i > 1; i--) {
        uint64_t j = nk_rng_uniform(&r, i);
        uint64_t t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
#define VAL() (values + nk_rng_uniform(&r, 4096))

    /* fillseq */
    rm_rf(dir);
    void *db = e->open(dir);
    double t0 = now_s(), c0 = cpu_s();
    for (uint64_t i = 0; i < num; i++) {
        make_key(key, i);
        e->put(db, key, VAL());
    }
    res->secs[0] = now_s() - t0;
    res->cpu[0] = cpu_s() - c0;
    res->ops[0] = num;
    e->close(db);
    rm_rf(dir);

    /* fillrandom */
    uint64_t w0 = wchar();
    db = e->open(dir);
    t0 = now_s();
    c0 = cpu_s();
    for (uint64_t i = 0; i < num; i++) {
        make_key(key, perm[i]);
        e->put(db, key, VAL());
    }
    res->secs[1] = now_s() - t0;
    res->cpu[1] = cpu_s() - c0;
    res->ops[1] = num;

    /* overwrite */
    t0 = now_s();
    c0 = cpu_s();
    for (uint64_t i = 0; i < num; i++) {
        make_key(key, nk_rng_uniform(&r, num));
        e->put(db, key, VAL());
    }
    res->secs[2] = now_s() - t0;
    res->cpu[2] = cpu_s() - c0;
    res->ops[2] = num;

    /* readrandom */
    uint64_t misses = 0;
    t0 = now_s();
    c0 = cpu_s();
    for (uint64_t i = 0; i < num; i++) {
        make_key(key, nk_rng_uniform(&r, num));
        misses += !e->get(db, key);
    }
    res->secs[3] = now_s() - t0;
    res->cpu[3] = cpu_s() - c0;
    res->ops[3] = num;

    /* readseq */
    t0 = now_s();
    c0 = cpu_s();
    void *it = e->iter(db);
    uint64_t n = 0, bytes = 0;
    for (e->seek_first(it); e->valid(it); e->next(it)) {
        bytes += e->key_len(it);
        n++;
    }
    e->iter_free(it);
    res->secs[4] = now_s() - t0;
    res->cpu[4] = cpu_s() - c0;
    res->ops[4] = n;
    if (n != num)
        fprintf(stderr, "  %s: readseq saw %" PRIu64 " keys, expected %" PRIu64 "\n", e->name, n,
                num);

    /* seekrandom */
    uint64_t nseek = num / 10;
    it = e->iter(db);
    t0 = now_s();
    c0 = cpu_s();
    for (uint64_t i = 0; i < nseek; i++) {
        make_key(key, nk_rng_uniform(&r, num));
        e->seek(it, key);
        if (e->valid(it))
            bytes += e->key_len(it);
        else
            misses++;
    }
    res->secs[5] = now_s() - t0;
    res->cpu[5] = cpu_s() - c0;
    res->ops[5] = nseek;
    e->iter_free(it);
    if (e->describe)
        e->describe(db);
    e->close(db);
    uint64_t written = wchar() - w0;
    res->write_amp = (double)written / (double)(2 * num * (KEY_LEN + VALUE_LEN));
    res->disk_bytes = dir_blocks(dir);
    res->found_misses = misses;
    rm_rf(dir);
    free(perm);
    free(values);
    (void)bytes;
}

int main(int argc, char **argv)
{
    const char *which = "nori,nori-pread,rocksdb,rocksdb-mmap,leveldb";
    int repeat = 1;
    for (int i = 1; i < argc; i++) {
        if (!strncmp(argv[i], "--num=", 6))
            num = strtoull(argv[i] + 6, NULL, 10);
        else if (!strncmp(argv[i], "--dir=", 6))
            base_dir = argv[i] + 6;
        else if (!strncmp(argv[i], "--engines=", 10))
            which = argv[i] + 10;
        else if (!strncmp(argv[i], "--write_buffer=", 15))
            write_buffer = strtoull(argv[i] + 15, NULL, 10);
        else if (!strncmp(argv[i], "--repeat=", 9))
            repeat = atoi(argv[i] + 9) > 0 ? atoi(argv[i] + 9) : 1;
        else if (!strncmp(argv[i], "--cache=", 8))
            cache_bytes = strtoull(argv[i] + 8, NULL, 10);
        else {
            fprintf(stderr, "usage: %s [--num=N] [--dir=PATH] "
                            "[--engines=nori,nori-pread,rocksdb,rocksdb-mmap,leveldb] "
                            "[--write_buffer=BYTES] [--cache=BYTES] [--repeat=R]\n",
                    argv[0]);
            return 2;
        }
    }
    struct result res[NENGINES];
    bool ran[NENGINES] = {0};
    nk_mkdirs(base_dir, 0755);
    printf("bench_engine: %" PRIu64 " keys of %d bytes, values of %d bytes; no compression, WAL "
           "without fsync, write buffer %" PRIu64 " MiB, bloom 10 bits/key, block cache %" PRIu64
           " MiB; dir %s\n",
           num, KEY_LEN, VALUE_LEN, write_buffer >> 20, cache_bytes >> 20, base_dir);
    printf("options of each engine:\n");
    for (int e = 0; e < NENGINES; e++)
        if (listed(which, engines[e].key))
            engines[e].print_options(engines[e].mmap);
    fflush(stdout);
    for (int round = 0; round < repeat * NENGINES; round++) {
        int e = round % NENGINES;
        if (!listed(which, engines[e].key))
            continue;
        int fds[2];
        if (pipe(fds) != 0)
            return 1;
        pid_t pid = fork();
        if (pid == 0) {
            close(fds[0]);
            char dir[4096];
            snprintf(dir, sizeof dir, "%s/%s", base_dir, engines[e].key);
            use_mmap = engines[e].mmap;
            struct result r;
            memset(&r, 0, sizeof r);
            run_engine(&engines[e], dir, &r);
            if (write(fds[1], &r, sizeof r) != (ssize_t)sizeof r)
                _exit(1);
            _exit(0);
        }
        close(fds[1]);
        struct result one;
        ssize_t got = read(fds[0], &one, sizeof one);
        close(fds[0]);
        int st;
        waitpid(pid, &st, 0);
        if (got != (ssize_t)sizeof one || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "bench_engine: %s failed\n", engines[e].name);
            return 1;
        }
        if (!ran[e]) {
            res[e] = one;
        } else { /* keep the best time of each benchmark */
            for (int b = 0; b < NBENCH; b++) {
                if (one.secs[b] < res[e].secs[b]) {
                    res[e].secs[b] = one.secs[b];
                    res[e].cpu[b] = one.cpu[b];
                }
            }
        }
        ran[e] = true;
        fprintf(stderr, "  %s run %d done (misses %" PRIu64 ")\n", engines[e].name,
                round / NENGINES + 1, one.found_misses);
    }
    /* the pairings: nori mmap vs the faster other mmap engine, nori pread vs RocksDB pread */
    bool mmap_pair = ran[E_NORI] && (ran[3] || ran[4]);
    bool pread_pair = ran[E_NORI_PREAD] && ran[E_ROCKS_PREAD];
    int ratio_cols = mmap_pair + pread_pair;
    printf("\n| benchmark |");
    for (int e = 0; e < NENGINES; e++)
        if (ran[e])
            printf(" %s ops/s (µs/op) |", engines[e].name);
    if (mmap_pair)
        printf(" nori mmap / faster other mmap |");
    if (pread_pair)
        printf(" nori pread / RocksDB pread |");
    printf("\n|---|");
    for (int e = 0; e < NENGINES; e++)
        if (ran[e])
            printf("---:|");
    for (int c = 0; c < ratio_cols; c++)
        printf("---:|");
    printf("\n");
    for (int b = 0; b < NBENCH; b++) {
        printf("| %s |", bench_names[b]);
        double ops[NENGINES] = {0};
        for (int e = 0; e < NENGINES; e++) {
            if (!ran[e])
                continue;
            ops[e] = (double)res[e].ops[b] / res[e].secs[b];
            printf(" %.0f (%.2f) |", ops[e], 1e6 / ops[e]);
        }
        if (mmap_pair)
            printf(" %.2f |", ops[E_NORI] / (ops[3] > ops[4] ? ops[3] : ops[4]));
        if (pread_pair)
            printf(" %.2f |", ops[E_NORI_PREAD] / ops[E_ROCKS_PREAD]);
        printf("\n");
    }
    printf("| cpu µs/op, all threads (the six benchmarks in order) |");
    for (int e = 0; e < NENGINES; e++)
        if (ran[e])
            printf(" %.2f / %.2f / %.2f / %.2f / %.2f / %.2f |", 1e6 * res[e].cpu[0] / res[e].ops[0],
                   1e6 * res[e].cpu[1] / res[e].ops[1], 1e6 * res[e].cpu[2] / res[e].ops[2],
                   1e6 * res[e].cpu[3] / res[e].ops[3], 1e6 * res[e].cpu[4] / res[e].ops[4],
                   1e6 * res[e].cpu[5] / res[e].ops[5]);
    for (int c = 0; c < ratio_cols; c++)
        printf(" |");
    printf("\n| write amplification |");
    for (int e = 0; e < NENGINES; e++)
        if (ran[e])
            printf(" %.2f |", res[e].write_amp);
    for (int c = 0; c < ratio_cols; c++)
        printf(" |");
    printf("\n| size on disk (MiB) |");
    for (int e = 0; e < NENGINES; e++)
        if (ran[e])
            printf(" %.1f |", (double)res[e].disk_bytes / 1048576.0);
    for (int c = 0; c < ratio_cols; c++)
        printf(" |");
    printf("\n");
    return 0;
}
