// sst_compare.cc: by-hand comparison of one table (not a ctest test).
// Builds the same 1M-key table (16-byte keys, 100-byte values, no
// compression, 10-bit bloom filter, 4 KiB blocks, restart interval 16) with
// LevelDB's TableBuilder, RocksDB's SstFileWriter and nori's sst_builder,
// then times random point lookups on each with 1 GiB block caches.
//
// Neither engine exposes its per-table Get (LevelDB Table::InternalGet,
// RocksDB BlockBasedTable::Get); the closest public path is a table
// iterator Seek, which walks the index and a data block like Get but also
// allocates an iterator per lookup. LevelDB reads its table through mmap
// (its default; such blocks bypass its block cache), RocksDB through pread
// and its block cache. Lookup times are thread CPU ns/op, best of 5.
//
//   sst_compare [num_keys] [dir]
#include <leveldb/cache.h>
#include <leveldb/env.h>
#include <leveldb/filter_policy.h>
#include <leveldb/iterator.h>
#include <leveldb/options.h>
#include <leveldb/table.h>
#include <leveldb/table_builder.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/iterator.h>
#include <rocksdb/options.h>
#include <rocksdb/sst_file_reader.h>
#include <rocksdb/sst_file_writer.h>
#include <rocksdb/table.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <unistd.h>

extern "C" {
#include "sstable/sstable.h"
}

static uint64_t cpu_ns()
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void make_key(uint64_t i, char *k)
{
    for (int j = 15; j >= 0; j--) {
        k[j] = (char)('0' + i % 10);
        i /= 10;
    }
}

static void make_val(struct nk_rng *rng, uint8_t *v)
{
    for (int j = 0; j < 100; j += 8) {
        uint64_t x = nk_rng_next(rng);
        memcpy(v + j, &x, j + 8 <= 100 ? 8 : 100 - j);
    }
}

int main(int argc, char **argv)
{
    uint64_t n = argc > 1 ? strtoull(argv[1], nullptr, 0) : 1000000;
    std::string dir = argc > 2 ? argv[2] : "/tmp";
    std::string lpath = dir + "/sst_compare." + std::to_string(getpid()) + ".ldb";
    std::string npath = dir + "/sst_compare." + std::to_string(getpid()) + ".sst";
    const uint64_t ops = 1000000;
    char key[16];
    uint8_t val[100];

    // ---- LevelDB table
    leveldb::Env *env = leveldb::Env::Default();
    leveldb::Options lo;
    lo.compression = leveldb::kNoCompression;
    lo.block_size = 4096;
    lo.block_restart_interval = 16;
    lo.filter_policy = leveldb::NewBloomFilterPolicy(10);
    lo.block_cache = leveldb::NewLRUCache(1u << 30);
    {
        leveldb::WritableFile *wf;
        if (!env->NewWritableFile(lpath, &wf).ok())
            return 1;
        leveldb::TableBuilder tb(lo, wf);
        struct nk_rng rng;
        nk_rng_seed(&rng, 1);
        for (uint64_t i = 0; i < n; i++) {
            make_key(i, key);
            make_val(&rng, val);
            tb.Add(leveldb::Slice(key, 16), leveldb::Slice((const char *)val, 100));
        }
        if (!tb.Finish().ok() || !wf->Sync().ok() || !wf->Close().ok())
            return 1;
        delete wf;
    }
    uint64_t lsize = 0;
    env->GetFileSize(lpath, &lsize);
    leveldb::RandomAccessFile *rf;
    leveldb::Table *table;
    if (!env->NewRandomAccessFile(lpath, &rf).ok() ||
        !leveldb::Table::Open(lo, rf, lsize, &table).ok())
        return 1;
    std::string got;
    double lbest = 1e18;
    for (int rep = 0; rep < 6; rep++) { // rep 0 warms the cache
        struct nk_rng rng;
        nk_rng_seed(&rng, 100 + rep);
        uint64_t t0 = cpu_ns(), hits = 0;
        for (uint64_t i = 0; i < ops; i++) {
            make_key(nk_rng_uniform(&rng, n), key);
            leveldb::Iterator *it = table->NewIterator(leveldb::ReadOptions());
            it->Seek(leveldb::Slice(key, 16));
            if (it->Valid() && it->key() == leveldb::Slice(key, 16)) {
                got.assign(it->value().data(), it->value().size());
                hits++;
            }
            delete it;
        }
        double t = (double)(cpu_ns() - t0) / (double)ops;
        if (hits != ops)
            return 2;
        if (rep > 0 && t < lbest)
            lbest = t;
    }
    delete table;
    delete rf;

    // ---- RocksDB table
    std::string rpath = dir + "/sst_compare." + std::to_string(getpid()) + ".rsst";
    double rbest = 1e18;
    uint64_t rsize = 0;
    {
        rocksdb::Options ro;
        ro.compression = rocksdb::kNoCompression;
        rocksdb::BlockBasedTableOptions bt;
        bt.block_size = 4096;
        bt.block_restart_interval = 16;
        bt.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
        bt.block_cache = rocksdb::NewLRUCache(1u << 30);
        ro.table_factory.reset(rocksdb::NewBlockBasedTableFactory(bt));
        rocksdb::SstFileWriter w(rocksdb::EnvOptions(), ro);
        if (!w.Open(rpath).ok())
            return 1;
        struct nk_rng rng;
        nk_rng_seed(&rng, 1);
        for (uint64_t i = 0; i < n; i++) {
            make_key(i, key);
            make_val(&rng, val);
            if (!w.Put(rocksdb::Slice(key, 16), rocksdb::Slice((const char *)val, 100)).ok())
                return 1;
        }
        rocksdb::ExternalSstFileInfo fi;
        if (!w.Finish(&fi).ok())
            return 1;
        rsize = fi.file_size;
        rocksdb::SstFileReader rd(ro);
        if (!rd.Open(rpath).ok())
            return 1;
        for (int rep = 0; rep < 6; rep++) {
            struct nk_rng rng;
            nk_rng_seed(&rng, 100 + rep);
            uint64_t t0 = cpu_ns(), hits = 0;
            for (uint64_t i = 0; i < ops; i++) {
                make_key(nk_rng_uniform(&rng, n), key);
                rocksdb::Iterator *it = rd.NewIterator(rocksdb::ReadOptions());
                it->Seek(rocksdb::Slice(key, 16));
                if (it->Valid() && it->key() == rocksdb::Slice(key, 16)) {
                    got.assign(it->value().data(), it->value().size());
                    hits++;
                }
                delete it;
            }
            double t = (double)(cpu_ns() - t0) / (double)ops;
            if (hits != ops)
                return 2;
            if (rep > 0 && t < rbest)
                rbest = t;
        }
    }
    unlink(rpath.c_str());

    // ---- nori table
    struct sst_options so;
    sst_options_default(&so);
    struct sst_builder *b;
    if (!nk_ok(sst_builder_open(npath.c_str(), &so, &b)))
        return 1;
    {
        struct nk_rng rng;
        nk_rng_seed(&rng, 1);
        for (uint64_t i = 0; i < n; i++) {
            make_key(i, key);
            make_val(&rng, val);
            if (!nk_ok(sst_builder_add(b, nk_slice_make(key, 16), nk_slice_make(val, 100))))
                return 1;
        }
    }
    struct sst_file_info info;
    if (!nk_ok(sst_builder_finish(b, &info)))
        return 1;
    struct sst_cache *cache;
    sst_cache_new(1u << 30, &cache);
    double nbest[2] = {1e18, 1e18};
    for (int mode = 0; mode < 2; mode++) { // cached, then mmap
        struct sst_read_options ro;
        sst_read_options_default(&ro);
        ro.cache = cache;
        ro.file_id = (uint64_t)mode + 1;
        ro.use_mmap = mode == 1;
        struct sst_reader *r;
        if (!nk_ok(sst_reader_open(npath.c_str(), &ro, &r)))
            return 1;
        struct nk_buf kb, vb;
        nk_buf_init(&kb);
        nk_buf_init(&vb);
        for (int rep = 0; rep < 6; rep++) {
            struct nk_rng rng;
            nk_rng_seed(&rng, 100 + rep);
            uint64_t t0 = cpu_ns(), hits = 0;
            for (uint64_t i = 0; i < ops; i++) {
                make_key(nk_rng_uniform(&rng, n), key);
                bool found;
                struct nk_slice k = nk_slice_make(key, 16);
                nk_status st = sst_reader_seek_one(r, k, k, &found, &kb, &vb);
                hits += nk_ok(st) && found && kb.len == 16 && !memcmp(kb.data, key, 16);
            }
            double t = (double)(cpu_ns() - t0) / (double)ops;
            if (hits != ops)
                return 2;
            if (rep > 0 && t < nbest[mode])
                nbest[mode] = t;
        }
        nk_buf_free(&kb);
        nk_buf_free(&vb);
        sst_reader_close(r);
    }
    double other = lbest < rbest ? lbest : rbest;
    printf("%llu keys; table bytes: leveldb %llu, rocksdb %llu, nori %llu\n",
           (unsigned long long)n, (unsigned long long)lsize, (unsigned long long)rsize,
           (unsigned long long)info.file_size);
    printf("random point lookup, warm (CPU ns/op, best of 5 x %llu; ratio = faster other / nori):\n",
           (unsigned long long)ops);
    printf("  leveldb Table iterator Seek (mmap):        %8.1f\n", lbest);
    printf("  rocksdb SstFileReader iterator Seek:       %8.1f\n", rbest);
    printf("  nori sst_reader_seek_one (block cache):    %8.1f  (%.2fx)\n", nbest[0],
           other / nbest[0]);
    printf("  nori sst_reader_seek_one (use_mmap):       %8.1f  (%.2fx)\n", nbest[1],
           other / nbest[1]);
    sst_file_info_free(&info);
    sst_cache_free(cache);
    delete lo.block_cache;
    delete lo.filter_policy;
    unlink(lpath.c_str());
    unlink(npath.c_str());
    return 0;
}
