/*
 * fuzz_api_events_parse.c: the parsing of GET /events requests
 * (events_http.c): ?since=, ?kind= (percent-decoded, comma-separated kind
 * names), unknown and repeated parameters, and the Last-Event-ID header,
 * against the ring's newest sequence number.
 *
 * Input: bytes 0..7 are the ring's newest seq (little-endian); then the
 * query string up to the first '\n' (split on '&' and the first '='), and
 * when a second part follows the '\n' it is the Last-Event-ID header (up to
 * a NUL). Checked: a parse either fails with INVALID_ARGUMENT and a
 * message, or resumes at a position not past the newest event, with a
 * non-empty kind filter.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "api/http_parse.h"

#define MAX_ARGS 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 8)
        return 0;
    uint64_t last = 0;
    for (int i = 7; i >= 0; i--)
        last = last << 8 | data[i];
    /* small rings are the interesting ones: sometimes keep last small */
    if (data[0] & 1)
        last &= 0xffff;
    const char *p = (const char *)data + 8, *end = (const char *)data + size;
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    char *query = strndup(p, (size_t)((nl ? nl : end) - p));
    char *lei = nl ? strndup(nl + 1, (size_t)(end - nl - 1)) : NULL;
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
    struct api_events_req r;
    nk_status s = api_events_parse(args, nargs, lei, last, &r);
    if (!nk_ok(s)) {
        NK_ASSERT(s.code == NK_INVALID_ARGUMENT && *nk_status_msg(s));
        nk_status_free(&s);
    } else {
        NK_ASSERT(r.since <= last);
        NK_ASSERT(r.kind_mask != 0);
        NK_ASSERT(!r.reset || r.since == 0);
        if (r.kind_mask != UINT32_MAX)
            NK_ASSERT((r.kind_mask & (1u << OBS_EV_GAP)) == 0 &&
                      (r.kind_mask >> OBS_EV_KIND_COUNT) == 0);
    }
    free(query);
    free(lei);
    return 0;
}

/* Valid requests to mutate from (newest seq 1000 in each). */
size_t LLVMFuzzerSeedCorpus(const uint8_t ***out, const size_t **lens)
{
    static const char *const s[] = {
        "since=10&kind=flush,compaction",
        "kind=leader_change%2Crole_change%2Cterm_change",
        "since=1000",
        "\nabc",
        "kind=write_stall,slow_request,snapshot,log_compaction\n999",
        "since=0&kind=lifecycle\n5",
    };
    enum { N = sizeof s / sizeof s[0] };
    static uint8_t buf[N][128];
    static const uint8_t *p[N];
    static size_t l[N];
    for (size_t i = 0; i < N; i++) {
        uint64_t last = 1000;
        for (int b = 0; b < 8; b++)
            buf[i][b] = (uint8_t)(last >> (8 * b));
        size_t n = strlen(s[i]);
        memcpy(buf[i] + 8, s[i], n);
        p[i] = buf[i];
        l[i] = 8 + n;
    }
    *out = p;
    *lens = l;
    return N;
}
