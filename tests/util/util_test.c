/* Tests of src/util: coding, checksums, routing hashes, arena, files. */
#include "testlib.h"

NK_TEST(varints_roundtrip_at_every_boundary)
{
    uint64_t vals[] = {0, 1, 127, 128, 255, 16383, 16384, (1ULL << 32) - 1, 1ULL << 32,
                       (1ULL << 63), UINT64_MAX};
    for (size_t i = 0; i < NK_ARRAY_LEN(vals); i++) {
        uint8_t b[NK_VARINT64_MAX];
        size_t n = nk_enc_varint64(b, vals[i]);
        NK_CHECK(n == nk_varint_len(vals[i]));
        uint64_t v = 0;
        const uint8_t *e = nk_dec_varint64(b, b + n, &v);
        NK_CHECK(e == b + n);
        NK_CHECK_EQ_U64(v, vals[i]);
        /* every truncation is refused */
        for (size_t k = 0; k < n; k++)
            NK_CHECK(nk_dec_varint64(b, b + k, &v) == NULL);
    }
}

NK_TEST(varint_decoder_rejects_overlong_and_overflowing_input)
{
    uint8_t over[11];
    memset(over, 0xff, sizeof over);
    uint64_t v;
    NK_CHECK(nk_dec_varint64(over, over + sizeof over, &v) == NULL);
    uint8_t big[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02};
    NK_CHECK(nk_dec_varint64(big, big + sizeof big, &v) == NULL);
    uint8_t b32[] = {0xff, 0xff, 0xff, 0xff, 0x1f}; /* 2^35-1 */
    uint32_t v32;
    NK_CHECK(nk_dec_varint32(b32, b32 + sizeof b32, &v32) == NULL);
}

NK_TEST(reader_never_reads_past_the_end)
{
    uint8_t buf[] = {5, 'h', 'e', 'l', 'l', 'o', 9};
    struct nk_reader r;
    nk_reader_init(&r, buf, sizeof buf);
    struct nk_slice s;
    NK_CHECK(nk_reader_lenbytes(&r, 16, &s));
    NK_CHECK(s.len == 5 && memcmp(s.data, "hello", 5) == 0);
    NK_CHECK(nk_reader_lenbytes(&r, 16, &s) == false); /* claims 9, has 0 */
    NK_CHECK(r.bad);
    uint8_t x;
    NK_CHECK(!nk_reader_u8(&r, &x)); /* stays bad */
    nk_reader_init(&r, buf, sizeof buf);
    NK_CHECK(!nk_reader_lenbytes(&r, 4, &s)); /* over the caller's max */
}

NK_TEST(crc32c_matches_known_vectors_in_hw_and_sw)
{
    /* RFC 3720 B.4 test vectors */
    uint8_t zeros[32] = {0}, ones[32], inc[32];
    memset(ones, 0xff, sizeof ones);
    for (int i = 0; i < 32; i++)
        inc[i] = (uint8_t)i;
    NK_CHECK_EQ_U64(nk_crc32c(zeros, 32), 0x8a9136aa);
    NK_CHECK_EQ_U64(nk_crc32c(ones, 32), 0x62a8ab43);
    NK_CHECK_EQ_U64(nk_crc32c(inc, 32), 0x46dd794e);
    NK_CHECK_EQ_U64(nk_crc32c("123456789", 9), 0xe3069283);
    /* extend is the same as one pass */
    NK_CHECK_EQ_U64(nk_crc32c_extend(nk_crc32c("1234", 4), "56789", 5), 0xe3069283);
    uint32_t c = nk_crc32c("abc", 3);
    NK_CHECK(nk_crc32c_unmask(nk_crc32c_mask(c)) == c);
    NK_CHECK(nk_crc32c_mask(c) != c);
}

NK_TEST(routing_hash_matches_contract_known_values)
{
    NK_CHECK_EQ_U64(nk_xxhash64("hello", 5), 2794345569481354659ULL);
    NK_CHECK_EQ_U64(nk_xxhash64("", 0), 17241709254077376921ULL);
    NK_CHECK_EQ_U64(nk_shard_for_key("hello", 5, 1024), 309);
    NK_CHECK_EQ_U64(nk_shard_for_key("hello", 5, 256), 118);
    NK_CHECK_EQ_U64(nk_shard_for_key("", 0, 1024), 332);
    NK_CHECK_EQ_U64(nk_shard_for_key("", 0, 256), 40);
    NK_CHECK_EQ_U64(nk_jump_hash(0, 1), 0);
    NK_CHECK_EQ_U64(nk_jump_hash(UINT64_MAX, 1), 0);
}

NK_TEST(jump_hash_moves_few_keys_when_buckets_grow)
{
    /* the defining property: growing n -> n+1 moves about 1/(n+1) of keys, all to n */
    int moved = 0;
    for (uint64_t k = 0; k < 10000; k++) {
        uint32_t a = nk_jump_hash(k * 0x9e3779b97f4a7c15ULL, 10);
        uint32_t b = nk_jump_hash(k * 0x9e3779b97f4a7c15ULL, 11);
        if (a != b) {
            moved++;
            NK_CHECK(b == 10);
        }
    }
    NK_CHECK(moved > 600 && moved < 1200);
}

NK_TEST(hash_vector_file_matches_this_implementation)
{
    /* tools/hashvec regenerates the file; it must be byte-identical. */
    const char *src = getenv("NK_SOURCE_DIR");
    const char *bld = getenv("NK_BUILD_DIR");
    NK_REQUIRE(src && bld);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s/tools/hashvec | cmp -s - %s/testdata/hash-vectors.json", bld,
             src);
    NK_CHECK(system(cmd) == 0);
}

NK_TEST(arena_hands_out_aligned_disjoint_memory)
{
    struct nk_arena a;
    nk_arena_init(&a);
    uint8_t *prev = NULL;
    for (int i = 0; i < 10000; i++) {
        size_t n = (size_t)(i % 97) + 1;
        uint8_t *p = (i & 1) ? nk_arena_alloc_aligned(&a, n) : nk_arena_alloc(&a, n);
        if (i & 1)
            NK_CHECK(((uintptr_t)p & 7) == 0);
        memset(p, i & 0xff, n);
        NK_CHECK(p != prev);
        prev = p;
    }
    void *big = nk_arena_alloc(&a, 1 << 20);
    memset(big, 1, 1 << 20);
    NK_CHECK(nk_arena_usage(&a) > (1 << 20));
    nk_arena_free(&a);
}

NK_TEST(aligned_arena_allocations_stay_aligned_at_the_end_of_a_block)
{
    /* fill a block up to a few unaligned bytes from its end, then ask for an
     * aligned piece that fits without the padding but not with it */
    struct nk_arena a;
    nk_arena_init(&a);
    for (size_t tail = 1; tail < 16; tail++) {
        nk_arena_free(&a);
        nk_arena_init(&a);
        (void)nk_arena_alloc(&a, 1); /* the block's cursor is now unaligned */
        while (a.left > tail + 3 + 1000)
            (void)nk_arena_alloc(&a, 1000);
        (void)nk_arena_alloc(&a, a.left - (tail + 3)); /* leaves tail + 3 bytes */
        NK_CHECK(a.left == tail + 3);
        if (((uintptr_t)a.ptr & 7) == 0)
            continue; /* this tail happens to be aligned: nothing to prove */
        uint8_t *p = nk_arena_alloc_aligned(&a, tail);
        NK_CHECK(((uintptr_t)p & 7) == 0);
        memset(p, 0xab, tail);
    }
    nk_arena_free(&a);
}

NK_TEST(atomic_file_write_replaces_whole_content)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/f", nk_test_tmpdir());
    NK_REQUIRE_OK(nk_write_file_atomic(path, "first", 5));
    NK_REQUIRE_OK(nk_write_file_atomic(path, "second!", 7));
    uint8_t *d;
    size_t n;
    NK_REQUIRE_OK(nk_read_file(path, 100, &d, &n));
    NK_CHECK(n == 7 && memcmp(d, "second!", 7) == 0);
    free(d);
    nk_status s = nk_read_file(path, 3, &d, &n);
    NK_CHECK(s.code == NK_OUT_OF_RANGE);
    nk_status_free(&s);
    s = nk_read_file("/nonexistent/nope", 3, &d, &n);
    NK_CHECK(s.code == NK_NOT_FOUND && strstr(nk_status_msg(s), "/nonexistent/nope"));
    nk_status_free(&s);
}

NK_TEST(status_messages_name_the_problem_and_wrap_context)
{
    nk_status s = nk_status_make(NK_INVALID_ARGUMENT, "key is %d bytes", 2000);
    s = nk_status_wrap(s, "put");
    NK_CHECK(s.code == NK_INVALID_ARGUMENT);
    NK_CHECK(strcmp(nk_status_msg(s), "put: key is 2000 bytes") == 0);
    nk_status_free(&s);
    NK_CHECK(nk_ok(s));
    NK_CHECK(nk_ok(nk_status_wrap(NK_OK, "x")));
}

NK_TEST(rng_is_deterministic_for_a_seed)
{
    struct nk_rng a, b;
    nk_rng_seed(&a, 42);
    nk_rng_seed(&b, 42);
    for (int i = 0; i < 100; i++)
        NK_CHECK(nk_rng_next(&a) == nk_rng_next(&b));
    for (int i = 0; i < 1000; i++)
        NK_CHECK(nk_rng_uniform(&a, 7) < 7);
}
