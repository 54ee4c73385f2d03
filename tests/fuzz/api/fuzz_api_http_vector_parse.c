/*
 * fuzz_api_http_vector_parse.c: the HTTP façade's parsing of /vector
 * requests (http_vector_parse.c): the route, percent-decoded namespace and
 * id, query parameters and the strict JSON body reader.
 *
 * Input: byte 0 picks the method; then the raw path after "/vector/" up to
 * the first '?', the query string up to the first '\n' (split on '&' and the
 * first '=', as libmicrohttpd does), and the rest is the body. Checked: a
 * parse fails with INVALID_ARGUMENT (UNIMPLEMENTED for a method the route
 * does not take) and a message, or yields a request every field of which is
 * within the vector limits: namespace and id lengths, finite values, 1 to
 * 4096 of them, k 1 to 1000, dimensions 1 to 4096, UTF-8 idempotency key.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_decode.h"
#include "api/http_vector.h"

#define MAX_ARGS 16

static const char *const METHODS[] = {"GET", "PUT", "POST", "DELETE", "HEAD", "PATCH"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *method = METHODS[data[0] % 6];
    const char *p = (const char *)data + 1, *end = (const char *)data + size;
    const char *q = memchr(p, '?', (size_t)(end - p));
    const char *nl = memchr(q ? q : p, '\n', (size_t)(end - (q ? q : p)));
    const char *path_end = q ? q : nl ? nl : end;
    char *path = strndup(p, (size_t)(path_end - p)); /* a C string, as MHD hands it over */
    char *query = q ? strndup(q + 1, (size_t)((nl ? nl : end) - q - 1)) : strdup("");
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
    const uint8_t *body = nl ? (const uint8_t *)nl + 1 : (const uint8_t *)end;
    size_t blen = (size_t)((const uint8_t *)end - body);
    struct api_http_vector_req r;
    api_http_vector_init(&r);
    nk_status s = api_http_parse_vector(method, path, strlen(path), args, nargs, body, blen, &r);
    if (!nk_ok(s)) {
        NK_ASSERT((s.code == NK_INVALID_ARGUMENT || s.code == NK_UNIMPLEMENTED) &&
                  *nk_status_msg(s));
        nk_status_free(&s);
    } else {
        NK_ASSERT(r.ns.len >= 1 && r.ns.len <= VEC_MAX_NAMESPACE);
        NK_ASSERT(api_utf8_valid(r.idem.data, r.idem.len) && r.idem.len <= VEC_MAX_IDEM_KEY);
        bool has_id = r.op == API_HV_INSERT || r.op == API_HV_GET || r.op == API_HV_DELETE;
        NK_ASSERT(has_id ? (r.id.len >= 1 && r.id.len <= VEC_MAX_ID) : r.id.len == 0);
        if (r.op == API_HV_INSERT || r.op == API_HV_SEARCH) {
            NK_ASSERT(r.n >= 1 && r.n <= VEC_MAX_DIMS);
            for (size_t i = 0; i < r.n; i++)
                NK_ASSERT(isfinite(r.v[i]));
        }
        if (r.op == API_HV_SEARCH)
            NK_ASSERT(r.k >= 1 && r.k <= VEC_MAX_K);
        if (r.op == API_HV_CREATE)
            NK_ASSERT(r.dims >= 1 && r.dims <= VEC_MAX_DIMS && r.metric >= 1 && r.metric <= 3 &&
                      r.type >= 1 && r.type <= 2);
        if (r.op != API_HV_GET && r.op != API_HV_SEARCH)
            NK_ASSERT(r.consistency == NODE_READ_LEASE);
    }
    api_http_vector_free(&r);
    free(path);
    free(query);
    return 0;
}

/* Valid requests to start from. */
size_t LLVMFuzzerSeedCorpus(const uint8_t ***out, const size_t **lens)
{
    static const char *const S[] = {
        "\x01" "emb\n{\"dimensions\":3,\"distance\":\"cosine\",\"index_type\":\"hnsw\"}",
        "\x01" "emb/doc%2F1?idempotency_key=k1\n{\"vector\":[0.1,-2e3,3.5]}",
        "\x02" "emb/search?consistency=stale_ok\n"
                "{\"query\":[1,2,3],\"k\":10,\"include_vectors\":true}",
        "\x00" "emb/doc-1?consistency=linearizable",
        "\x03" "emb/doc-1",
        "\x03" "emb",
    };
    static const uint8_t *seeds[6];
    static size_t sl[6];
    for (size_t i = 0; i < 6; i++) {
        seeds[i] = (const uint8_t *)S[i];
        sl[i] = strlen(S[i] + 1) + 1;
    }
    *out = seeds;
    *lens = sl;
    return 6;
}
