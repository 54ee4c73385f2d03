/*
 * http_parse.c: parsing /kv/{key} requests with explicit lengths
 * (http_parse.h says why).
 */
#include <stdio.h>

#include "api/api_decode.h"
#include "api/http_parse.h"
#include "kv/kv.h"

void api_http_kv_init(struct api_http_kv_req *r)
{
    memset(r, 0, sizeof(*r));
    nk_buf_init(&r->key);
    nk_buf_init(&r->idem);
}

void api_http_kv_free(struct api_http_kv_req *r)
{
    nk_buf_free(&r->key);
    nk_buf_free(&r->idem);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool api_pct_decode(const char *in, size_t n, struct nk_buf *out, size_t *bad_at)
{
    nk_buf_reserve(out, n);
    for (size_t i = 0; i < n; i++) {
        if (in[i] != '%') {
            nk_buf_put_u8(out, (uint8_t)in[i]);
            continue;
        }
        int h = i + 2 < n ? hexval(in[i + 1]) : -1;
        int l = h >= 0 ? hexval(in[i + 2]) : -1;
        if (l < 0) {
            if (bad_at)
                *bad_at = i;
            return false;
        }
        nk_buf_put_u8(out, (uint8_t)(h << 4 | l));
        i += 2;
    }
    return true;
}

bool api_parse_u64(const uint8_t *s, size_t n, uint64_t *out)
{
    if (n == 0 || n > 20)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

bool api_parse_bool(const uint8_t *s, size_t n, bool *out)
{
#define IS(lit) (n == sizeof(lit) - 1 && memcmp(s, lit, n) == 0)
    if (IS("true") || IS("1"))
        *out = true;
    else if (IS("false") || IS("0"))
        *out = false;
    else
        return false;
    return true;
#undef IS
}

bool api_parse_version(const uint8_t *s, size_t n, uint64_t *term, uint64_t *index)
{
    const uint8_t *dot = n ? memchr(s, '.', n) : NULL;
    if (!dot)
        return false;
    size_t tl = (size_t)(dot - s);
    return api_parse_u64(s, tl, term) && api_parse_u64(dot + 1, n - tl - 1, index);
}

void api_http_body_append(struct nk_buf *body, bool *too_big, const void *chunk, size_t n)
{
    if (*too_big)
        return;
    if (n > API_HTTP_MAX_BODY - body->len) {
        *too_big = true;
        nk_buf_free(body);
        nk_buf_init(body);
        return;
    }
    nk_buf_append(body, chunk, n);
}

/* The query parameters /kv knows, and the methods each applies to. */
enum { P_CONSISTENCY, P_TTL, P_IF_MATCH, P_IF_NOT_EXISTS, P_IDEM, P_COUNT };
static const struct {
    const char *name;
    unsigned methods; /* bit per enum api_http_method */
} PARAMS[P_COUNT] = {
    [P_CONSISTENCY] = {"consistency", 1u << API_HTTP_GET},
    [P_TTL] = {"ttl_ms", 1u << API_HTTP_PUT},
    [P_IF_MATCH] = {"if_match", 1u << API_HTTP_PUT | 1u << API_HTTP_DELETE},
    [P_IF_NOT_EXISTS] = {"if_not_exists", 1u << API_HTTP_PUT},
    [P_IDEM] = {"idempotency_key", 1u << API_HTTP_PUT | 1u << API_HTTP_DELETE},
};
static const char *const METHOD_NAMES[] = {"GET", "PUT", "DELETE"};

static nk_status bad(const char *what, const struct nk_buf *got, const char *rule)
{
    char q[160];
    api_quote(q, sizeof q, got->data, got->len, 40);
    return nk_status_make(NK_INVALID_ARGUMENT, "%s '%s' is invalid: %s", what, q, rule);
}

nk_status api_http_parse_kv(enum api_http_method m, const char *path, size_t path_len,
                            const struct api_http_arg *args, size_t nargs,
                            struct api_http_kv_req *out)
{
    size_t at = 0;
    if (!api_pct_decode(path, path_len, &out->key, &at))
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "key is not percent-encoded correctly: '%%' at byte %zu of the path "
                              "after /kv/ is not followed by two hex digits",
                              at);
    if (out->key.len == 0)
        return nk_status_make(NK_INVALID_ARGUMENT, "key is empty; use /kv/{key}");
    if (out->key.len > KV_MAX_KEY)
        return nk_status_make(NK_INVALID_ARGUMENT, "key is %zu bytes; the limit is %u bytes",
                              out->key.len, KV_MAX_KEY);
    bool seen[P_COUNT] = {false};
    struct nk_buf name, val;
    nk_buf_init(&name);
    nk_buf_init(&val);
    nk_status s = NK_OK;
    for (size_t i = 0; i < nargs && nk_ok(s); i++) {
        if (args[i].name_len == 0 && !args[i].value)
            continue; /* an empty segment ("a=1&&b=2") */
        name.len = 0;
        val.len = 0;
        char q[160];
        if (!api_pct_decode(args[i].name, args[i].name_len, &name, NULL)) {
            api_quote(q, sizeof q, (const uint8_t *)args[i].name, args[i].name_len, 40);
            s = nk_status_make(NK_INVALID_ARGUMENT,
                               "query parameter name '%s' is not percent-encoded correctly", q);
            break;
        }
        int p = -1;
        for (int k = 0; k < P_COUNT; k++)
            if (name.len == strlen(PARAMS[k].name) && !memcmp(name.data, PARAMS[k].name, name.len))
                p = k;
        api_quote(q, sizeof q, name.data, name.len, 40);
        if (p < 0) {
            s = nk_status_make(NK_INVALID_ARGUMENT,
                               "unknown query parameter '%s' for /kv/{key} (known: consistency, "
                               "ttl_ms, if_match, if_not_exists, idempotency_key)",
                               q);
            break;
        }
        if (!(PARAMS[p].methods & (1u << m))) {
            s = nk_status_make(NK_INVALID_ARGUMENT,
                               "query parameter %s does not apply to %s /kv/{key}", q,
                               METHOD_NAMES[m]);
            break;
        }
        if (seen[p]) {
            s = nk_status_make(NK_INVALID_ARGUMENT, "query parameter %s is given more than once",
                               q);
            break;
        }
        seen[p] = true;
        if (args[i].value && !api_pct_decode(args[i].value, args[i].value_len, &val, NULL)) {
            s = nk_status_make(NK_INVALID_ARGUMENT,
                               "query parameter %s is not percent-encoded correctly", q);
            break;
        }
        switch (p) {
        case P_CONSISTENCY:
            if (!node_parse_consistency((const char *)val.data, val.len, &out->consistency))
                s = bad("consistency", &val, "use lease, linearizable or stale_ok");
            break;
        case P_TTL:
            if (!api_parse_u64(val.data, val.len, &out->ttl_ms))
                s = bad("ttl_ms", &val,
                        "ttl_ms must be a non-negative decimal integer of milliseconds");
            break;
        case P_IF_MATCH:
            if (!api_parse_version(val.data, val.len, &out->if_match_term,
                                   &out->if_match_index))
                s = bad("if_match", &val,
                        "if_match must be a version written as <term>.<index>, both decimal "
                        "integers from 1 to 18446744073709551615");
            out->has_if_match = true;
            break;
        case P_IF_NOT_EXISTS:
            if (!api_parse_bool(val.data, val.len, &out->if_not_exists))
                s = bad("if_not_exists", &val, "if_not_exists must be true, false, 1 or 0");
            break;
        case P_IDEM:
            if (!api_utf8_valid(val.data, val.len))
                s = bad("idempotency_key", &val, "idempotency_key must be valid UTF-8");
            else if (val.len)
                nk_buf_append(&out->idem, val.data, val.len);
            break;
        }
    }
    nk_buf_free(&name);
    nk_buf_free(&val);
    return s;
}
