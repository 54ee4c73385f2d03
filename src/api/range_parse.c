/*
 * range_parse.c: checking a range request and the continuation token
 * (docs/range.md, docs/format/range-token.md). Pure: no node, no I/O, so
 * that the fuzz target reaches everything a client's bytes can reach.
 */
#include <stdio.h>
#include <stdlib.h>

#include "api/api_decode.h"
#include "api/range.h"

void api_range_req_init(struct api_range_req *r)
{
    memset(r, 0, sizeof(*r));
    nk_buf_init(&r->start);
    nk_buf_init(&r->end);
    nk_buf_init(&r->prefix);
    nk_buf_init(&r->after);
}

void api_range_req_free(struct api_range_req *r)
{
    nk_buf_free(&r->start);
    nk_buf_free(&r->end);
    nk_buf_free(&r->prefix);
    nk_buf_free(&r->after);
    free(r->shards);
    r->shards = NULL;
    r->nshards = 0;
}

void api_range_token_encode(struct nk_slice after, struct nk_buf *out)
{
    nk_buf_put_u8(out, API_RANGE_TOKEN_FORMAT);
    nk_buf_put_lenbytes(out, after.data, after.len);
}

nk_status api_range_token_decode(struct nk_slice tok, struct nk_buf *after)
{
    struct nk_reader r;
    nk_reader_init(&r, tok.data, tok.len);
    uint8_t fmt = 0;
    struct nk_slice k = {0};
    nk_reader_u8(&r, &fmt);
    if (r.bad || fmt != API_RANGE_TOKEN_FORMAT)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "continuation token is not one this server issued (format %u)", fmt);
    nk_reader_lenbytes(&r, KV_MAX_KEY, &k);
    if (r.bad || k.len == 0 || nk_reader_left(&r) != 0)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "continuation token is malformed (%zu bytes)", tok.len);
    nk_buf_clear(after);
    nk_buf_append(after, k.data, k.len);
    return NK_OK;
}

static nk_status bound_len(const char *name, struct nk_slice s)
{
    if (s.len > KV_MAX_KEY)
        return nk_status_make(NK_INVALID_ARGUMENT, "%s is %zu bytes; the limit is %u bytes", name,
                              s.len, KV_MAX_KEY);
    return NK_OK;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

nk_status api_range_req_parse(const struct api_range_fields *f, uint32_t total_shards,
                              struct api_range_req *out)
{
    NK_TRY(bound_len("start", f->start));
    NK_TRY(bound_len("end", f->end));
    NK_TRY(bound_len("prefix", f->prefix));
    if (f->limit > API_RANGE_MAX_LIMIT)
        return nk_status_make(NK_INVALID_ARGUMENT, "limit %u is over the maximum of %u entries",
                              f->limit, API_RANGE_MAX_LIMIT);
    if (f->max_bytes > API_RANGE_MAX_BYTES)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "max_bytes %llu is over the maximum of %u bytes",
                              (unsigned long long)f->max_bytes, API_RANGE_MAX_BYTES);
    if (!node_parse_consistency((const char *)f->consistency.data, f->consistency.len,
                                &out->consistency)) {
        char q[300];
        api_quote(q, sizeof q, f->consistency.data, f->consistency.len, 64);
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "unknown consistency level '%s'; use lease, linearizable or stale_ok",
                              q);
    }
    if (f->nshards > total_shards)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "%zu shards requested; the cluster has %u shards", f->nshards,
                              total_shards);
    nk_buf_append(&out->start, f->start.data, f->start.len);
    nk_buf_append(&out->end, f->end.data, f->end.len);
    nk_buf_append(&out->prefix, f->prefix.data, f->prefix.len);
    out->limit = f->limit ? f->limit : API_RANGE_DEFAULT_LIMIT;
    out->max_bytes = f->max_bytes ? f->max_bytes : API_RANGE_DEFAULT_BYTES;
    out->keys_only = f->keys_only;
    if (f->token.len) {
        NK_TRY(api_range_token_decode(f->token, &out->after));
        out->has_after = true;
    }
    if (f->nshards == 0) {
        out->nshards = total_shards;
        out->shards = nk_malloc((total_shards ? total_shards : 1) * sizeof(*out->shards));
        for (uint32_t i = 0; i < total_shards; i++)
            out->shards[i] = (uint16_t)i;
        return NK_OK;
    }
    uint32_t *sorted = nk_malloc(f->nshards * sizeof(*sorted));
    memcpy(sorted, f->shards, f->nshards * sizeof(*sorted));
    qsort(sorted, f->nshards, sizeof(*sorted), cmp_u32);
    nk_status s = NK_OK;
    for (size_t i = 0; i < f->nshards && nk_ok(s); i++) {
        if (sorted[i] >= total_shards)
            s = nk_status_make(NK_INVALID_ARGUMENT,
                               "shard %u does not exist (the cluster has %u shards)", sorted[i],
                               total_shards);
        else if (i && sorted[i] == sorted[i - 1])
            s = nk_status_make(NK_INVALID_ARGUMENT, "shard %u is requested twice", sorted[i]);
    }
    if (nk_ok(s)) {
        out->shards = nk_malloc(f->nshards * sizeof(*out->shards));
        for (size_t i = 0; i < f->nshards; i++)
            out->shards[i] = (uint16_t)sorted[i];
        out->nshards = (uint32_t)f->nshards;
    }
    free(sorted);
    return s;
}

/* ------------------------------------------------------------------- HTTP */

enum { R_PREFIX, R_START, R_END, R_LIMIT, R_CURSOR, R_KEYS_ONLY, R_CONSISTENCY, R_COUNT };
static const char *const RNAMES[R_COUNT] = {"prefix", "start",     "end",        "limit",
                                            "cursor", "keys_only", "consistency"};

static int hexv(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

nk_status api_range_parse_http(const struct api_http_arg *args, size_t nargs,
                               uint32_t total_shards, struct api_range_req *out)
{
    struct nk_buf val[R_COUNT], name;
    bool seen[R_COUNT] = {false};
    for (int k = 0; k < R_COUNT; k++)
        nk_buf_init(&val[k]);
    nk_buf_init(&name);
    nk_status s = NK_OK;
    char q[160];
    for (size_t i = 0; i < nargs && nk_ok(s); i++) {
        if (args[i].name_len == 0 && !args[i].value)
            continue; /* an empty segment ("a=1&&b=2") */
        nk_buf_clear(&name);
        if (!api_pct_decode(args[i].name, args[i].name_len, &name, NULL)) {
            api_quote(q, sizeof q, (const uint8_t *)args[i].name, args[i].name_len, 40);
            s = nk_status_make(NK_INVALID_ARGUMENT,
                               "query parameter name '%s' is not percent-encoded correctly", q);
            break;
        }
        int p = -1;
        for (int k = 0; k < R_COUNT; k++)
            if (name.len == strlen(RNAMES[k]) && !memcmp(name.data, RNAMES[k], name.len))
                p = k;
        api_quote(q, sizeof q, name.data, name.len, 40);
        if (p < 0) {
            s = nk_status_make(NK_INVALID_ARGUMENT,
                               "unknown query parameter '%s' for /kv (known: prefix, start, end, "
                               "limit, cursor, keys_only, consistency)",
                               q);
        } else if (seen[p]) {
            s = nk_status_make(NK_INVALID_ARGUMENT, "query parameter %s is given more than once",
                               q);
        } else if (args[i].value &&
                   !api_pct_decode(args[i].value, args[i].value_len, &val[p], NULL)) {
            s = nk_status_make(NK_INVALID_ARGUMENT,
                               "query parameter %s is not percent-encoded correctly", q);
        } else {
            seen[p] = true;
        }
    }
    if (nk_ok(s) && !seen[R_PREFIX] && !seen[R_START] && !seen[R_END])
        s = nk_status_make(NK_INVALID_ARGUMENT,
                           "a range needs prefix, start or end (GET /kv?prefix=... or "
                           "/kv?start=...&end=...); a key is read with GET /kv/{key}");
    uint64_t limit = 0;
    bool keys_only = false;
    if (nk_ok(s) && seen[R_LIMIT] &&
        (!api_parse_u64(val[R_LIMIT].data, val[R_LIMIT].len, &limit) || limit == 0 ||
         limit > API_RANGE_MAX_LIMIT)) {
        api_quote(q, sizeof q, val[R_LIMIT].data, val[R_LIMIT].len, 40);
        s = nk_status_make(NK_INVALID_ARGUMENT,
                           "limit '%s' is invalid: a decimal integer from 1 to %u", q,
                           API_RANGE_MAX_LIMIT);
    }
    if (nk_ok(s) && seen[R_KEYS_ONLY] &&
        !api_parse_bool(val[R_KEYS_ONLY].data, val[R_KEYS_ONLY].len, &keys_only)) {
        api_quote(q, sizeof q, val[R_KEYS_ONLY].data, val[R_KEYS_ONLY].len, 40);
        s = nk_status_make(NK_INVALID_ARGUMENT,
                           "keys_only '%s' is invalid: keys_only must be true, false, 1 or 0", q);
    }
    struct nk_buf tok;
    nk_buf_init(&tok);
    if (nk_ok(s) && seen[R_CURSOR]) {
        const struct nk_buf *c = &val[R_CURSOR];
        bool ok = c->len > 0 && c->len % 2 == 0;
        for (size_t i = 0; ok && i < c->len; i += 2) {
            int h = hexv(c->data[i]), l = hexv(c->data[i + 1]);
            ok = h >= 0 && l >= 0;
            if (ok)
                nk_buf_put_u8(&tok, (uint8_t)(h << 4 | l));
        }
        if (!ok)
            s = nk_status_make(NK_INVALID_ARGUMENT,
                               "cursor is invalid: pass the cursor of the previous page as it "
                               "was (lower-case hex)");
    }
    if (nk_ok(s)) {
        struct api_range_fields f = {
            .start = nk_slice_make(val[R_START].data, val[R_START].len),
            .end = nk_slice_make(val[R_END].data, val[R_END].len),
            .prefix = nk_slice_make(val[R_PREFIX].data, val[R_PREFIX].len),
            .token = nk_slice_make(tok.data, tok.len),
            .consistency = nk_slice_make(val[R_CONSISTENCY].data, val[R_CONSISTENCY].len),
            .limit = (uint32_t)limit,
            .keys_only = keys_only,
        };
        s = api_range_req_parse(&f, total_shards, out);
    }
    nk_buf_free(&tok);
    for (int k = 0; k < R_COUNT; k++)
        nk_buf_free(&val[k]);
    nk_buf_free(&name);
    return s;
}
