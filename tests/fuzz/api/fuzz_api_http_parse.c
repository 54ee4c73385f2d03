/*
 * fuzz_api_http_parse.c: the HTTP facade's parsing of /kv/{key} requests
 * (http_parse.c), the code between libmicrohttpd and the node: key and
 * query percent-decoding, consistency, ttl_ms, if_match, if_not_exists,
 * idempotency_key, unknown/repeated/inapplicable parameters, and the body
 * limit.
 *
 * Input: byte 0 picks the method; then the raw path after "/kv/" up to the
 * first '?', the query string up to the first '\n' (split on '&' and the
 * first '=', '+' made a space, as libmicrohttpd does before handing values
 * over), and the rest is the body, fed in chunks whose sizes come from the
 * input too. Checked: a parse either fails with INVALID_ARGUMENT and a
 * message, or yields a key of 1..1024 bytes that re-encodes (every byte as
 * %XX) and decodes back to itself, a UTF-8 idempotency key, and values that
 * agree with independent checks; the body never exceeds its limit.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_decode.h"
#include "api/http_parse.h"
#include "kv/kv.h"

#define MAX_ARGS 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    enum api_http_method m = (enum api_http_method)(data[0] % 3);
    const char *p = (const char *)data + 1, *end = (const char *)data + size;
    const char *q = memchr(p, '?', (size_t)(end - p));
    const char *nl = memchr(q ? q : p, '\n', (size_t)(end - (q ? q : p)));
    const char *path_end = q ? q : nl ? nl : end;
    /* the path as libmicrohttpd hands it over: a C string (no raw NUL) */
    char *path = strndup(p, (size_t)(path_end - p));
    char *query = q ? strndup(q + 1, (size_t)((nl ? nl : end) - q - 1)) : strdup("");
    struct api_http_arg args[MAX_ARGS];
    size_t nargs = 0;
    for (char *save = NULL, *tok = strtok_r(query, "&", &save); tok && nargs < MAX_ARGS;
         tok = strtok_r(NULL, "&", &save)) {
        for (char *c = tok; *c; c++)
            if (*c == '+')
                *c = ' ';
        char *eq = strchr(tok, '=');
        if (eq)
            *eq = '\0';
        args[nargs++] = (struct api_http_arg){tok, strlen(tok), eq ? eq + 1 : NULL,
                                              eq ? strlen(eq + 1) : 0};
    }
    struct api_http_kv_req r;
    api_http_kv_init(&r);
    nk_status s = api_http_parse_kv(m, path, strlen(path), args, nargs, &r);
    if (!nk_ok(s)) {
        NK_ASSERT(s.code == NK_INVALID_ARGUMENT && *nk_status_msg(s));
        nk_status_free(&s);
    } else {
        NK_ASSERT(r.key.len >= 1 && r.key.len <= KV_MAX_KEY);
        NK_ASSERT(api_utf8_valid(r.idem.data, r.idem.len));
        /* percent-encoding every byte and decoding gives the key back */
        char *enc = malloc(r.key.len * 3 + 1);
        for (size_t i = 0; i < r.key.len; i++)
            sprintf(enc + 3 * i, "%%%02X", r.key.data[i]);
        struct nk_buf back;
        nk_buf_init(&back);
        NK_ASSERT(api_pct_decode(enc, r.key.len * 3, &back, NULL));
        NK_ASSERT(back.len == r.key.len && !memcmp(back.data, r.key.data, back.len));
        nk_buf_free(&back);
        free(enc);
        if (m != API_HTTP_PUT)
            NK_ASSERT(!r.if_not_exists && r.ttl_ms == 0);
        if (m != API_HTTP_GET)
            NK_ASSERT(r.consistency == NODE_READ_LEASE);
    }
    api_http_kv_free(&r);
    /* the strict scalar parsers against strtoull on the same bytes */
    if (nargs && args[0].value) {
        uint64_t v;
        bool ok = api_parse_u64((const uint8_t *)args[0].value, args[0].value_len, &v);
        bool digits = args[0].value_len > 0;
        for (size_t i = 0; i < args[0].value_len; i++)
            digits &= args[0].value[i] >= '0' && args[0].value[i] <= '9';
        if (ok)
            NK_ASSERT(digits && v == strtoull(args[0].value, NULL, 10));
        bool b;
        if (api_parse_bool((const uint8_t *)args[0].value, args[0].value_len, &b))
            NK_ASSERT(!strcmp(args[0].value, b ? "true" : "false") ||
                      !strcmp(args[0].value, b ? "1" : "0"));
    }
    /* the body: fed in chunks, never kept beyond its limit */
    const uint8_t *body = nl ? (const uint8_t *)nl + 1 : (const uint8_t *)end;
    size_t blen = (size_t)((const uint8_t *)end - body);
    struct nk_buf b;
    nk_buf_init(&b);
    bool too_big = false;
    size_t fed = 0;
    for (size_t off = 0; off < blen;) {
        size_t n = 1 + body[off] % 64;
        if (n > blen - off)
            n = blen - off;
        /* a first chunk starting with a byte >= 0xf0 (49 to 64 bytes) is
         * repeated 32768 times, so that the limit is reached with small
         * inputs (and few inputs pay for it) */
        size_t reps = off == 0 && body[0] >= 0xf0 ? 32768 : 1;
        for (size_t k = 0; k < reps; k++) {
            api_http_body_append(&b, &too_big, body + off, n);
            fed += n;
        }
        off += n;
    }
    NK_ASSERT(b.len <= API_HTTP_MAX_BODY);
    NK_ASSERT(too_big == (fed > API_HTTP_MAX_BODY));
    NK_ASSERT(too_big || b.len == fed);
    static unsigned long over;
    if (too_big && ++over == 1 && getenv("NK_FUZZ_STATS"))
        fprintf(stderr, "body limit reached\n");
    nk_buf_free(&b);
    free(path);
    free(query);
    return 0;
}

size_t LLVMFuzzerSeedCorpus(const uint8_t ***out, const size_t **lens)
{
    static const char *const s[] = {
        "\x01key?ttl_ms=1000&if_not_exists=true&idempotency_key=abc\nvalue",
        "\x01a%00b?if_match=1.2\nv",
        "\x00k%FFey?consistency=linearizable\n",
        "\x02some/key?if_match=3.4&idempotency_key=r%00x\n",
        "\x01k?if_not_exists=0&ttl_ms=18446744073709551615\n",
    };
    static const uint8_t *p[5];
    static size_t l[5];
    for (size_t i = 0; i < 5; i++) {
        p[i] = (const uint8_t *)s[i];
        l[i] = strlen(s[i] + 1) + 1;
    }
    *out = p;
    *lens = l;
    return 5;
}
