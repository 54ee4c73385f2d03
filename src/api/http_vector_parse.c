/*
 * http_vector_parse.c: parsing of the /vector HTTP requests (http_vector.h):
 * the route, percent-decoded path segments, query parameters and a small,
 * strict JSON reader for the request bodies. Every loop is bounded by the
 * input's length; arrays by VEC_MAX_DIMS.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "api/api_decode.h"
#include "api/http_vector.h"

#define BAD(...) nk_status_make(NK_INVALID_ARGUMENT, __VA_ARGS__)

void api_http_vector_init(struct api_http_vector_req *r)
{
    memset(r, 0, sizeof(*r));
    nk_buf_init(&r->ns);
    nk_buf_init(&r->id);
    nk_buf_init(&r->idem);
}

void api_http_vector_free(struct api_http_vector_req *r)
{
    nk_buf_free(&r->ns);
    nk_buf_free(&r->id);
    nk_buf_free(&r->idem);
    free(r->v);
    r->v = NULL;
}

/* ------------------------------------------------------------------ JSON */

struct jr {
    const uint8_t *p, *end;
};

static void ws(struct jr *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static bool eat(struct jr *j, char c)
{
    ws(j);
    if (j->p < j->end && *j->p == (uint8_t)c) {
        j->p++;
        return true;
    }
    return false;
}

/* A string without escapes or control bytes; *s points into the body. */
static nk_status jstring(struct jr *j, struct nk_slice *s, const char *what)
{
    ws(j);
    if (j->p >= j->end || *j->p != '"')
        return BAD("request body: %s must be a string", what);
    const uint8_t *start = ++j->p;
    while (j->p < j->end && *j->p != '"') {
        if (*j->p == '\\')
            return BAD("request body: %s contains an escape; escapes are not supported here",
                       what);
        if (*j->p < 0x20)
            return BAD("request body: %s contains a control byte", what);
        j->p++;
    }
    if (j->p >= j->end)
        return BAD("request body: %s is an unterminated string", what);
    *s = nk_slice_make(start, (size_t)(j->p - start));
    j->p++;
    if (!api_utf8_valid(s->data, s->len))
        return BAD("request body: %s is not valid UTF-8", what);
    return NK_OK;
}

/* A JSON number (RFC 8259 grammar) as a double. */
static nk_status jnumber(struct jr *j, double *out, const char *what)
{
    ws(j);
    const uint8_t *s = j->p, *p = j->p;
    if (p < j->end && *p == '-')
        p++;
    if (p < j->end && *p == '0') {
        p++;
    } else if (p < j->end && *p >= '1' && *p <= '9') {
        while (p < j->end && *p >= '0' && *p <= '9')
            p++;
    } else {
        return BAD("request body: %s must be a number", what);
    }
    if (p < j->end && *p == '.') {
        p++;
        if (p >= j->end || *p < '0' || *p > '9')
            return BAD("request body: %s is not a valid number", what);
        while (p < j->end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < j->end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < j->end && (*p == '+' || *p == '-'))
            p++;
        if (p >= j->end || *p < '0' || *p > '9')
            return BAD("request body: %s is not a valid number", what);
        while (p < j->end && *p >= '0' && *p <= '9')
            p++;
    }
    char tmp[64];
    if ((size_t)(p - s) >= sizeof tmp)
        return BAD("request body: %s has more than 63 characters", what);
    memcpy(tmp, s, (size_t)(p - s));
    tmp[p - s] = 0;
    *out = strtod(tmp, NULL);
    j->p = p;
    return NK_OK;
}

static nk_status juint(struct jr *j, uint64_t max, uint64_t *out, const char *what)
{
    double d;
    NK_TRY(jnumber(j, &d, what));
    if (!(d >= 0) || d != floor(d) || d > (double)max)
        return BAD("request body: %s must be a whole number from 0 to %llu", what,
                   (unsigned long long)max);
    *out = (uint64_t)d;
    return NK_OK;
}

static nk_status jbool(struct jr *j, bool *out, const char *what)
{
    ws(j);
    size_t left = (size_t)(j->end - j->p);
    if (left >= 4 && !memcmp(j->p, "true", 4)) {
        j->p += 4;
        *out = true;
    } else if (left >= 5 && !memcmp(j->p, "false", 5)) {
        j->p += 5;
        *out = false;
    } else {
        return BAD("request body: %s must be true or false", what);
    }
    return NK_OK;
}

/* An array of at most VEC_MAX_DIMS numbers into a malloc'd float array. */
static nk_status jfloats(struct jr *j, float **v, size_t *n, const char *what)
{
    if (!eat(j, '['))
        return BAD("request body: %s must be an array of numbers", what);
    size_t cap = 16;
    float *out = nk_malloc(cap * sizeof(float));
    size_t k = 0;
    nk_status s = NK_OK;
    if (!eat(j, ']')) {
        for (;;) {
            if (k == VEC_MAX_DIMS) {
                s = BAD("request body: %s has more than %u values", what, VEC_MAX_DIMS);
                break;
            }
            double d;
            s = jnumber(j, &d, what);
            if (!nk_ok(s))
                break;
            if (k == cap) {
                cap *= 2;
                out = nk_realloc(out, cap * sizeof(float));
            }
            out[k++] = (float)d; /* beyond float's range: infinite, refused by the limits */
            if (eat(j, ','))
                continue;
            if (eat(j, ']'))
                break;
            s = BAD("request body: %s: expected ',' or ']' after value %zu", what, k - 1);
            break;
        }
    }
    if (!nk_ok(s)) {
        free(out);
        return s;
    }
    free(*v);
    *v = out;
    *n = k;
    return NK_OK;
}

enum {
    F_DIMS = 1,
    F_DISTANCE = 2,
    F_TYPE = 4,
    F_VECTOR = 8,
    F_QUERY = 16,
    F_K = 32,
    F_INCLUDE = 64,
};

static const struct {
    const char *name;
    unsigned flag;
} FIELDS[] = {{"dimensions", F_DIMS}, {"distance", F_DISTANCE}, {"index_type", F_TYPE},
              {"vector", F_VECTOR},   {"query", F_QUERY},       {"k", F_K},
              {"include_vectors", F_INCLUDE}};

static nk_status parse_body(const uint8_t *body, size_t len, unsigned allowed, unsigned required,
                            struct api_http_vector_req *r)
{
    struct jr j = {body, body + len};
    if (!eat(&j, '{'))
        return BAD("request body must be a JSON object");
    unsigned seen = 0;
    if (!eat(&j, '}')) {
        for (;;) {
            struct nk_slice name;
            NK_TRY(jstring(&j, &name, "a member name"));
            unsigned f = 0;
            for (size_t i = 0; i < NK_ARRAY_LEN(FIELDS); i++)
                if (name.len == strlen(FIELDS[i].name) &&
                    !memcmp(name.data, FIELDS[i].name, name.len))
                    f = FIELDS[i].flag;
            char q[120];
            api_quote(q, sizeof q, name.data, name.len, 32);
            if (!f)
                return BAD("request body: unknown member '%s'", q);
            if (!(f & allowed))
                return BAD("request body: member '%s' does not apply to this request", q);
            if (f & seen)
                return BAD("request body: member '%s' is given more than once", q);
            seen |= f;
            if (!eat(&j, ':'))
                return BAD("request body: expected ':' after '%s'", q);
            uint64_t u;
            struct nk_slice sv;
            switch (f) {
            case F_DIMS:
                NK_TRY(juint(&j, VEC_MAX_DIMS, &u, "dimensions"));
                r->dims = (uint32_t)u;
                break;
            case F_K:
                NK_TRY(juint(&j, VEC_MAX_K, &u, "k"));
                r->k = (uint32_t)u;
                break;
            case F_INCLUDE:
                NK_TRY(jbool(&j, &r->include_vectors, "include_vectors"));
                break;
            case F_VECTOR:
                NK_TRY(jfloats(&j, &r->v, &r->n, "vector"));
                break;
            case F_QUERY:
                NK_TRY(jfloats(&j, &r->v, &r->n, "query"));
                break;
            case F_DISTANCE:
                NK_TRY(jstring(&j, &sv, "distance"));
                if (nk_slice_eq(sv, nk_slice_str("euclidean")))
                    r->metric = VEC_METRIC_L2;
                else if (nk_slice_eq(sv, nk_slice_str("cosine")))
                    r->metric = VEC_METRIC_COSINE;
                else if (nk_slice_eq(sv, nk_slice_str("inner_product")))
                    r->metric = VEC_METRIC_IP;
                else
                    return BAD("request body: distance must be \"euclidean\", \"cosine\" or "
                               "\"inner_product\"");
                break;
            case F_TYPE:
                NK_TRY(jstring(&j, &sv, "index_type"));
                if (nk_slice_eq(sv, nk_slice_str("hnsw")))
                    r->type = VEC_INDEX_HNSW;
                else if (nk_slice_eq(sv, nk_slice_str("brute_force")))
                    r->type = VEC_INDEX_FLAT;
                else
                    return BAD("request body: index_type must be \"hnsw\" or \"brute_force\"");
                break;
            }
            if (eat(&j, ','))
                continue;
            if (eat(&j, '}'))
                break;
            return BAD("request body: expected ',' or '}' after member '%s'", q);
        }
    }
    ws(&j);
    if (j.p != j.end)
        return BAD("request body: trailing bytes after the JSON object");
    for (size_t i = 0; i < NK_ARRAY_LEN(FIELDS); i++)
        if ((required & FIELDS[i].flag) && !(seen & FIELDS[i].flag))
            return BAD("request body: member '%s' is missing", FIELDS[i].name);
    return NK_OK;
}

/* ---------------------------------------------------------------- route */

static nk_status segment(const char *s, size_t n, struct nk_buf *out, const char *what)
{
    size_t at = 0;
    if (!api_pct_decode(s, n, out, &at))
        return BAD("%s is not percent-encoded correctly (at byte %zu)", what, at);
    if (!api_utf8_valid(out->data, out->len))
        return BAD("%s is not valid UTF-8", what);
    return NK_OK;
}

static nk_status parse_args(const struct api_http_arg *args, size_t nargs, bool write,
                            struct api_http_vector_req *r)
{
    bool have_idem = false, have_cons = false;
    for (size_t i = 0; i < nargs; i++) {
        struct nk_buf name, val;
        nk_buf_init(&name);
        nk_buf_init(&val);
        nk_status s = NK_OK;
        if (!api_pct_decode(args[i].name, args[i].name_len, &name, NULL))
            s = BAD("a query parameter name is not percent-encoded correctly");
        else if (args[i].value && !api_pct_decode(args[i].value, args[i].value_len, &val, NULL))
            s = BAD("query parameter value is not percent-encoded correctly");
        struct nk_slice nm = nk_slice_make(name.data, name.len);
        char q[120];
        api_quote(q, sizeof q, name.data, name.len, 32);
        if (!nk_ok(s)) {
        } else if (name.len == 0) {
            /* "a=1&&b=2": empty segments are skipped */
        } else if (nk_slice_eq(nm, nk_slice_str("idempotency_key"))) {
            if (!write)
                s = BAD("query parameter 'idempotency_key' does not apply to reads");
            else if (have_idem)
                s = BAD("query parameter 'idempotency_key' is given more than once");
            else if (val.len > VEC_MAX_IDEM_KEY || !api_utf8_valid(val.data, val.len))
                s = BAD("idempotency_key is invalid: at most %u bytes of valid UTF-8",
                        VEC_MAX_IDEM_KEY);
            else
                nk_buf_append(&r->idem, val.data, val.len);
            have_idem = true;
        } else if (nk_slice_eq(nm, nk_slice_str("consistency"))) {
            if (write)
                s = BAD("query parameter 'consistency' does not apply to writes");
            else if (have_cons)
                s = BAD("query parameter 'consistency' is given more than once");
            else if (!node_parse_consistency((const char *)val.data, val.len, &r->consistency)) {
                char v[120];
                api_quote(v, sizeof v, val.data, val.len, 32);
                s = BAD("consistency '%s' is invalid; use lease, linearizable or stale_ok", v);
            }
            have_cons = true;
        } else {
            s = BAD("unknown query parameter '%s'", q);
        }
        nk_buf_free(&name);
        nk_buf_free(&val);
        NK_TRY(s);
    }
    return NK_OK;
}

nk_status api_http_parse_vector(const char *method, const char *path, size_t path_len,
                                const struct api_http_arg *args, size_t nargs,
                                const uint8_t *body, size_t body_len,
                                struct api_http_vector_req *out)
{
    const char *slash = memchr(path, '/', path_len);
    size_t ns_len = slash ? (size_t)(slash - path) : path_len;
    NK_TRY(segment(path, ns_len, &out->ns, "namespace"));
    NK_TRY(vec_validate_namespace(nk_slice_make(out->ns.data, out->ns.len)));
    bool has_id = slash != NULL;
    const char *rest = has_id ? slash + 1 : NULL;
    size_t rest_len = has_id ? path_len - ns_len - 1 : 0;
    bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    bool put = !strcmp(method, "PUT");
    bool post = !strcmp(method, "POST");
    bool del = !strcmp(method, "DELETE");
    if (has_id && memchr(rest, '/', rest_len))
        return BAD("vector paths are /vector/{namespace} and /vector/{namespace}/{id}; "
                   "percent-encode '/' inside an id as %%2F");
    if (!has_id && put)
        out->op = API_HV_CREATE;
    else if (!has_id && del)
        out->op = API_HV_DROP;
    else if (has_id && post && rest_len == 6 && !memcmp(rest, "search", 6))
        out->op = API_HV_SEARCH;
    else if (has_id && put)
        out->op = API_HV_INSERT;
    else if (has_id && get)
        out->op = API_HV_GET;
    else if (has_id && del)
        out->op = API_HV_DELETE;
    else
        return nk_status_make(NK_UNIMPLEMENTED,
                              "method %.16s is not allowed here (PUT or DELETE "
                              "/vector/{namespace}; PUT, GET or DELETE /vector/{namespace}/{id}; "
                              "POST /vector/{namespace}/search)",
                              method);
    if (out->op == API_HV_INSERT || out->op == API_HV_GET || out->op == API_HV_DELETE) {
        NK_TRY(segment(rest, rest_len, &out->id, "vector id"));
        NK_TRY(vec_validate_id(nk_slice_make(out->id.data, out->id.len)));
        if (memchr(out->id.data, 0, out->id.len))
            return BAD("vector id contains a NUL byte");
    }
    bool write = out->op != API_HV_GET && out->op != API_HV_SEARCH;
    NK_TRY(parse_args(args, nargs, write, out));
    switch (out->op) {
    case API_HV_CREATE:
        NK_TRY(parse_body(body, body_len, F_DIMS | F_DISTANCE | F_TYPE,
                          F_DIMS | F_DISTANCE | F_TYPE, out));
        return vec_validate_dims(out->dims);
    case API_HV_INSERT:
        NK_TRY(parse_body(body, body_len, F_VECTOR, F_VECTOR, out));
        return vec_validate_vector(out->v, out->n, 0);
    case API_HV_SEARCH:
        NK_TRY(parse_body(body, body_len, F_QUERY | F_K | F_INCLUDE, F_QUERY | F_K, out));
        NK_TRY(vec_validate_k(out->k));
        return vec_validate_vector(out->v, out->n, 0);
    default:
        if (body_len)
            return BAD("this request takes no body");
        return NK_OK;
    }
}
