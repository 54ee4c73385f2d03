/*
 * fuzz_api_range.c: the range request's checks and the continuation token
 * (range_parse.c), everything a client's bytes reach before a scan runs.
 *
 * Input: byte 0 picks the entry point: 0 the token decoder on the rest;
 * 1 the request fields (bytes 1..4 the limit, 5 keys_only, then fields
 * split at 0xff bytes: start, end, prefix, token, consistency, and shard
 * ids as u16 pairs); 2 the HTTP query string (split on '&' and the first
 * '='). Checked: a success yields bounds of at most 1024 bytes, a limit in
 * 1..10000, ascending distinct shards below the total, and a token whose
 * key re-encodes to a token that decodes to the same key; a failure is
 * INVALID_ARGUMENT with a message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/range.h"

#define TOTAL 64

static void check_req(nk_status s, const struct api_range_req *r)
{
    if (!nk_ok(s)) {
        NK_ASSERT(s.code == NK_INVALID_ARGUMENT && nk_status_msg(s)[0]);
        return;
    }
    NK_ASSERT(r->start.len <= KV_MAX_KEY && r->end.len <= KV_MAX_KEY &&
              r->prefix.len <= KV_MAX_KEY);
    NK_ASSERT(r->limit >= 1 && r->limit <= API_RANGE_MAX_LIMIT);
    NK_ASSERT(r->max_bytes >= 1 && r->max_bytes <= API_RANGE_MAX_BYTES);
    NK_ASSERT(r->nshards >= 1 && r->nshards <= TOTAL);
    for (uint32_t i = 0; i < r->nshards; i++)
        NK_ASSERT(r->shards[i] < TOTAL && (i == 0 || r->shards[i] > r->shards[i - 1]));
    if (r->has_after)
        NK_ASSERT(r->after.len >= 1 && r->after.len <= KV_MAX_KEY);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    struct api_range_req r;
    api_range_req_init(&r);
    nk_status s = NK_OK;
    if (data[0] % 3 == 0) {
        struct nk_buf after, tok, again;
        nk_buf_init(&after);
        nk_buf_init(&tok);
        nk_buf_init(&again);
        s = api_range_token_decode(nk_slice_make(data + 1, size - 1), &after);
        if (nk_ok(s)) {
            NK_ASSERT(after.len >= 1 && after.len <= KV_MAX_KEY);
            api_range_token_encode(nk_slice_make(after.data, after.len), &tok);
            nk_status s2 = api_range_token_decode(nk_slice_make(tok.data, tok.len), &again);
            NK_ASSERT(nk_ok(s2) && again.len == after.len &&
                      memcmp(again.data, after.data, after.len) == 0);
        } else {
            NK_ASSERT(s.code == NK_INVALID_ARGUMENT);
        }
        nk_buf_free(&after);
        nk_buf_free(&tok);
        nk_buf_free(&again);
    } else if (data[0] % 3 == 1) {
        if (size < 6)
            goto out;
        struct api_range_fields f = {0};
        memcpy(&f.limit, data + 1, 4);
        f.keys_only = data[5] & 1;
        f.max_bytes = (uint64_t)(data[5] >> 1) << 16;
        struct nk_slice parts[6] = {{0}};
        size_t np = 0, at = 6, from = 6;
        for (; at <= size && np < 6; at++) {
            if (at == size || data[at] == 0xff) {
                parts[np++] = nk_slice_make(data + from, at - from);
                from = at + 1;
            }
        }
        f.start = parts[0];
        f.end = parts[1];
        f.prefix = parts[2];
        f.token = parts[3];
        f.consistency = parts[4];
        uint32_t shards[TOTAL + 8];
        size_t ns = 0;
        for (size_t i = 0; i + 1 < parts[5].len && ns < TOTAL + 8; i += 2)
            shards[ns++] = (uint32_t)parts[5].data[i] | (uint32_t)parts[5].data[i + 1] << 8;
        f.shards = shards;
        f.nshards = ns;
        s = api_range_req_parse(&f, TOTAL, &r);
        check_req(s, &r);
    } else {
        char *query = strndup((const char *)data + 1, size - 1);
        struct api_http_arg args[16];
        size_t nargs = 0;
        for (char *save = NULL, *t = strtok_r(query, "&", &save); t && nargs < 16;
             t = strtok_r(NULL, "&", &save)) {
            char *eq = strchr(t, '=');
            if (eq)
                *eq = '\0';
            args[nargs++] = (struct api_http_arg){t, strlen(t), eq ? eq + 1 : NULL,
                                                  eq ? strlen(eq + 1) : 0};
        }
        s = api_range_parse_http(args, nargs, TOTAL, &r);
        check_req(s, &r);
        free(query);
    }
out:
    nk_status_free(&s);
    api_range_req_free(&r);
    return 0;
}

size_t LLVMFuzzerSeedCorpus(const uint8_t ***out, const size_t **lens);
size_t LLVMFuzzerSeedCorpus(const uint8_t ***out, const size_t **lens)
{
    static const uint8_t t0[] = {0, 1, 3, 'a', 'b', 'c'};
    static const uint8_t f0[] = {1, 10, 0, 0, 0, 1, 'a', 0xff, 'z', 0xff, 'p', 0xff, 0xff,
                                 'l', 'e', 'a', 's', 'e', 0xff, 3, 0, 7, 0};
    static const char h0[] = "\x02prefix=us%00er&limit=5&keys_only=true&cursor=0101ff";
    static const uint8_t *seeds[] = {t0, f0, (const uint8_t *)h0};
    static size_t sl[] = {sizeof t0, sizeof f0, sizeof h0 - 1};
    *out = seeds;
    *lens = sl;
    return 3;
}
