/*
 * fuzz_api_watch_parse.c: the parsing of GET /watch requests
 * (watch_http.c): key=, prefix=, start=/end= (percent-decoded, bounded),
 * from= (comma-separated shard:term.index), keys_only=, unknown and repeated
 * parameters, against a cluster of 1 to 1024 shards.
 *
 * Input: byte 0 picks the shard count; the rest is the query string (split
 * on '&' and the first '='). Checked: a parse either fails with
 * INVALID_ARGUMENT and a message, or yields exactly one selector with
 * bounded keys, a range whose start is below its end, and resume positions
 * only for existing shards.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "api/http_parse.h"
#include "kv/kv.h"

#define MAX_ARGS 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const uint32_t totals[4] = {1, 16, 300, 1024};
    uint32_t total = totals[data[0] & 3];
    char *query = strndup((const char *)data + 1, size - 1);
    struct api_http_arg args[MAX_ARGS];
    size_t nargs = 0;
    for (char *save = NULL, *tok = strtok_r(query, "&", &save); tok && nargs < MAX_ARGS;
         tok = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(tok, '=');
        if (eq)
            *eq = '\0';
        args[nargs++] = (struct api_http_arg){tok, strlen(tok), eq ? eq + 1 : NULL,
                                              eq ? strlen(eq + 1) : 0};
    }
    struct api_watch_filter f;
    nk_status s = api_watch_http_parse(args, nargs, total, &f);
    if (!nk_ok(s)) {
        NK_ASSERT(s.code == NK_INVALID_ARGUMENT && *nk_status_msg(s));
        nk_status_free(&s);
    } else {
        NK_ASSERT(f.mode >= 0 && f.mode <= 2);
        NK_ASSERT(f.k1.len <= KV_MAX_KEY && f.k2.len <= KV_MAX_KEY);
        if (f.mode != 2)
            NK_ASSERT(f.k1.len > 0);
        if (f.mode == 2 && f.k1.len && f.k2.len)
            NK_ASSERT(nk_slice_cmp(nk_slice_make(f.k1.data, f.k1.len),
                                   nk_slice_make(f.k2.data, f.k2.len)) < 0);
        NK_ASSERT(f.nshards == total);
    }
    api_watch_filter_free(&f);
    free(query);
    return 0;
}

/* Valid requests to mutate from. */
size_t LLVMFuzzerSeedCorpus(const uint8_t ***out, const size_t **lens)
{
    static const char *const s[] = {
        "\x03prefix=user%2F&from=3:1.20,7:2.9",
        "\x01key=a&keys_only=true",
        "\x02start=a&end=b",
        "\x03start=%00%01&from=1023:5.5",
    };
    enum { N = sizeof s / sizeof s[0] };
    static const uint8_t *p[N];
    static size_t l[N];
    for (size_t i = 0; i < N; i++) {
        p[i] = (const uint8_t *)s[i];
        l[i] = strlen(s[i]);
    }
    *out = p;
    *lens = l;
    return N;
}
