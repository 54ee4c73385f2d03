/*
 * http_parse.h: the HTTP façade's request parsing, free of libmicrohttpd so
 * that it can be fuzzed and tested alone. Not a public header.
 *
 * libmicrohttpd is told not to unescape anything (a no-op unescape
 * callback): its unescaping writes into C strings, so "%00" would cut a key
 * at the NUL. Here every piece is percent-decoded with explicit lengths: the
 * key after /kv/, query parameter names and values. docs/http.md documents
 * the accepted forms (booleans true/false/1/0, versions <term>.<index>,
 * decimal ttl_ms; unknown, repeated or inapplicable parameters are 400).
 *
 * Memory: an api_http_kv_req owns its decoded buffers (api_http_kv_free).
 * Thread-safe: no shared state.
 */
#ifndef NK_API_HTTP_PARSE_H
#define NK_API_HTTP_PARSE_H

#include "node/node.h"
#include "util/util.h"

/* Request bodies are buffered up to the value limit plus slack; beyond it
 * the rest is drained and the request answered 400. */
#define API_HTTP_MAX_BODY (1024u * 1024u + 4096u)

enum api_http_method { API_HTTP_GET = 0, API_HTTP_PUT = 1, API_HTTP_DELETE = 2 };

/* One query parameter as it came on the wire (percent-encoded; '+' already
 * turned into a space). value NULL: the parameter had no '='. */
struct api_http_arg {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

struct api_http_kv_req {
    struct nk_buf key;  /* decoded, 1..KV_MAX_KEY bytes */
    struct nk_buf idem; /* decoded idempotency_key (valid UTF-8), empty: none */
    enum node_consistency consistency;
    uint64_t ttl_ms;
    bool has_if_match;
    uint64_t if_match_term, if_match_index;
    bool if_not_exists;
};

void api_http_kv_init(struct api_http_kv_req *r);
void api_http_kv_free(struct api_http_kv_req *r);

/*
 * Parses /kv/{key}: `path` is the raw path after "/kv/" (path_len bytes),
 * `args` the query parameters. An error is INVALID_ARGUMENT whose message
 * names the part at fault (the key, or the parameter by name).
 */
nk_status api_http_parse_kv(enum api_http_method m, const char *path, size_t path_len,
                            const struct api_http_arg *args, size_t nargs,
                            struct api_http_kv_req *out);

/*
 * Percent-decodes in[0..n) into out (appended). Strict: '%' must be followed
 * by two hex digits. False on a malformed escape (*bad_at: its offset).
 */
bool api_pct_decode(const char *in, size_t n, struct nk_buf *out, size_t *bad_at);

/* Strict parsers; false on anything else (sign, space, empty, overflow). */
bool api_parse_u64(const uint8_t *s, size_t n, uint64_t *out);
bool api_parse_bool(const uint8_t *s, size_t n, bool *out); /* true false 1 0 */
bool api_parse_version(const uint8_t *s, size_t n, uint64_t *term, uint64_t *index);

/* Body accumulation: appends a chunk unless the body would pass
 * API_HTTP_MAX_BODY, in which case *too_big is set and nothing more is kept. */
void api_http_body_append(struct nk_buf *body, bool *too_big, const void *chunk, size_t n);

#endif /* NK_API_HTTP_PARSE_H */
