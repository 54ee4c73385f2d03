/*
 * api/range.h: Kv.Range and GET /kv?... (docs/range.md). Not a public header.
 *
 * range_parse.c turns a request (from protobuf fields or HTTP query
 * parameters) into a checked api_range_req, and encodes and decodes the
 * continuation token (docs/format/range-token.md); it is pure and fuzzed.
 * range.c runs a request: a read barrier per requested shard (lease,
 * linearizable or stale_ok, as Kv.Get), then one kv_scan page over the
 * shards this node may answer for.
 *
 * Memory: an api_range_req owns its buffers (api_range_req_free).
 */
#ifndef NK_API_RANGE_H
#define NK_API_RANGE_H

#include "api/api_internal.h"
#include "api/http_parse.h"
#include "kv/kv.h"
#include "node/node.h"

#define API_RANGE_DEFAULT_LIMIT 1000u
#define API_RANGE_MAX_LIMIT     10000u
#define API_RANGE_DEFAULT_BYTES (1u << 20)
#define API_RANGE_MAX_BYTES     (3u << 20)
/* Records a page may examine (expired ones included) before it stops. */
#define API_RANGE_MAX_EXAMINED  100000u
/* How long a page waits for its shards' read barriers at most. */
#define API_RANGE_BARRIER_MS    2000u
#define API_RANGE_TOKEN_FORMAT  1

struct api_range_req {
    struct nk_buf start, end, prefix;
    bool has_after;
    struct nk_buf after; /* from the continuation token */
    uint32_t limit;
    uint64_t max_bytes;
    bool keys_only;
    enum node_consistency consistency;
    uint16_t *shards; /* ascending, distinct */
    uint32_t nshards;
};

void api_range_req_init(struct api_range_req *r);
void api_range_req_free(struct api_range_req *r);

/* The fields of a RangeRequest, as they came (already bounded by the
 * protobuf decoder). */
struct api_range_fields {
    struct nk_slice start, end, prefix, token, consistency;
    uint32_t limit;
    uint64_t max_bytes;
    bool keys_only;
    const uint32_t *shards;
    size_t nshards;
};

/* Checks the fields and fills out; INVALID_ARGUMENT naming the field. */
nk_status api_range_req_parse(const struct api_range_fields *f, uint32_t total_shards,
                              struct api_range_req *out);

/* The continuation token: u8 format | lenbytes key (1..KV_MAX_KEY). */
void api_range_token_encode(struct nk_slice after, struct nk_buf *out);
nk_status api_range_token_decode(struct nk_slice tok, struct nk_buf *after);

/*
 * GET /kv?prefix=&start=&end=&limit=&cursor=&keys_only=&consistency=: the
 * query parameters (percent-encoded) into the request; cursor is the token
 * in lower-case hex.
 */
nk_status api_range_parse_http(const struct api_http_arg *args, size_t nargs,
                               uint32_t total_shards, struct api_range_req *out);

/* ------------------------------------------------------------- range.c */

/* What a finished request hands its caller: code OK with the page and the
 * shards covered, or the error (with a leader hint when one is known). */
struct api_range_outcome {
    enum nk_code code;
    const char *msg;
    const char *hint;
    const struct kv_scan_page *page;
    const uint16_t *covered;
    uint32_t ncovered;
};

typedef void (*api_range_done_fn)(void *ctx, const struct api_range_outcome *o);

/* Runs the request (taking ownership of *req: it is moved out); `done` is
 * called exactly once, on this thread or a node thread. */
void api_range_run(struct api *a, struct api_range_req *req, uint64_t deadline_mono_ns,
                   api_range_done_fn done, void *ctx);

/* Registers Kv.Range and Kv.Batch (range.c, batch.c). */
nk_status api_range_register(struct api *a, struct rpc_server *s);
nk_status api_batch_register(struct api *a, struct rpc_server *s);

#endif /* NK_API_RANGE_H */
