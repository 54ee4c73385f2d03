/*
 * http_vector.h: the HTTP façade of the Vector service (docs/http.md,
 * "/vector"). Not a public header.
 *
 * Parsing (http_vector_parse.c) is free of libmicrohttpd and of the node,
 * so that it can be fuzzed alone: the method, the raw path after
 * "/vector/" (percent-encoded namespace and id), the raw query parameters
 * and the JSON body become one api_http_vector_req, or INVALID_ARGUMENT
 * naming the part at fault. The JSON accepted is a single flat object whose
 * members are numbers, booleans, plain strings (no escapes; only enum names
 * travel in strings) and arrays of numbers; anything else is refused.
 *
 * Memory: a request owns its buffers (api_http_vector_free). Thread-safe:
 * no shared state.
 */
#ifndef NK_API_HTTP_VECTOR_H
#define NK_API_HTTP_VECTOR_H

#include "api/http_parse.h"
#include "vector/vector.h"

enum api_http_vop {
    API_HV_CREATE = 1, /* PUT    /vector/{ns}          {"dimensions", "distance", "index_type"} */
    API_HV_DROP,       /* DELETE /vector/{ns} */
    API_HV_INSERT,     /* PUT    /vector/{ns}/{id}     {"vector": [...]} */
    API_HV_GET,        /* GET    /vector/{ns}/{id} */
    API_HV_DELETE,     /* DELETE /vector/{ns}/{id} */
    API_HV_SEARCH,     /* POST   /vector/{ns}/search   {"query": [...], "k", "include_vectors"} */
};

struct api_http_vector_req {
    enum api_http_vop op;
    struct nk_buf ns, id, idem; /* decoded; id only for INSERT, GET, DELETE */
    enum node_consistency consistency;
    /* CREATE */
    uint32_t dims;
    enum vec_metric metric;
    enum vec_index_type type;
    /* INSERT (the vector) and SEARCH (the query) */
    float *v;
    size_t n;
    uint32_t k;
    bool include_vectors;
};

void api_http_vector_init(struct api_http_vector_req *r);
void api_http_vector_free(struct api_http_vector_req *r);

/* method: "GET", "HEAD", "PUT", "POST", "DELETE"; path: after "/vector/". */
nk_status api_http_parse_vector(const char *method, const char *path, size_t path_len,
                                const struct api_http_arg *args, size_t nargs,
                                const uint8_t *body, size_t body_len,
                                struct api_http_vector_req *out);

struct api;
struct MHD_Connection;
/* http_vector.c: serves a /vector request (blocks its connection thread
 * until the node answers, as /kv does). */
int api_http_vector(struct api *a, struct MHD_Connection *c, const char *method,
                    const char *path, const struct nk_buf *body);

#endif /* NK_API_HTTP_VECTOR_H */
