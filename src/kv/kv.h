/*
 * kv: the replicated key-value state machine of a shard.
 *
 * A client write becomes a command (kv_cmd), encoded into the data of one
 * Raft entry (docs/format/commands.md). Every replica decodes and applies the
 * committed commands of a shard in log order; apply is deterministic: it
 * depends only on the command, the entry's (term, index) and the state
 * written by earlier entries, never on the local clock. Time enters only
 * through the command's timestamp, taken from the leader's clock when it
 * proposed the write (TTL expiry, idempotency retention).
 *
 * This header has two halves: the command codec (pure functions over bytes;
 * the decoder takes untrusted bytes and rejects malformed input with
 * NK_INVALID_ARGUMENT / NK_DATA_LOSS), and the state machine over the node's
 * LSM (see the second half).
 *
 * Memory: a decoded kv_cmd borrows its slices from the input bytes.
 * Thread-safety: the codec is pure and thread-safe.
 */
#ifndef NK_KV_H
#define NK_KV_H

#include "util/util.h"

/* Limits of CONTRACT.md, plus the idempotency key bound of this server. */
#define KV_MAX_KEY       1024u
#define KV_MAX_VALUE     (1024u * 1024u)
#define KV_MAX_REQUEST   (2u * 1024u * 1024u)
#define KV_MAX_IDEM_KEY  512u
#define KV_CMD_VERSION   1

enum kv_op { KV_OP_PUT = 1, KV_OP_DELETE = 2 };

/* A write as proposed to Raft. */
struct kv_cmd {
    enum kv_op op;
    uint64_t timestamp_ms;  /* leader's wall clock at proposal */
    struct nk_slice key;    /* 1..KV_MAX_KEY bytes */
    struct nk_slice value;  /* PUT only, <= KV_MAX_VALUE */
    uint64_t ttl_ms;        /* PUT only; 0: no expiry */
    bool has_if_match;      /* CAS on PUT or DELETE */
    uint64_t if_match_term, if_match_index;
    bool if_not_exists;     /* PUT only */
    struct nk_slice idem_key; /* empty: none */
};

/*
 * Checks a request against the limits; the status message names the limit
 * ("key is 1025 bytes; the limit is 1024"). Used by the API before proposing
 * and by the decoder.
 */
nk_status kv_cmd_validate(const struct kv_cmd *c);

/* Appends the encoding of c to out. c must be valid. */
void kv_cmd_encode(const struct kv_cmd *c, struct nk_buf *out);

/* Decodes untrusted bytes; slices in *c point into data. */
nk_status kv_cmd_decode(const void *data, size_t n, struct kv_cmd *c);

/*
 * Fingerprint of a command's parameters for idempotency: two requests with
 * the same idempotency key are "the same request" when their fingerprints
 * match (op, key, value, ttl_ms, if_match, if_not_exists; not the timestamp).
 */
uint64_t kv_cmd_fingerprint(const struct kv_cmd *c);

/* Absolute expiry (ms since the epoch) of a PUT; 0 when it has no TTL. */
static inline uint64_t kv_cmd_expiry_ms(const struct kv_cmd *c)
{
    return c->ttl_ms ? c->timestamp_ms + c->ttl_ms : 0;
}

/* The outcome of applying one command; what the client is told. */
struct kv_result {
    enum nk_code code;        /* OK, FAILED_PRECONDITION (CAS), ALREADY_EXISTS, INVALID_ARGUMENT */
    uint64_t term, index;     /* Version of the entry (also for failures) */
    bool tombstoned;          /* DELETE: a live value was removed */
    bool has_current;         /* CAS failure on an existing key: its version */
    uint64_t cur_term, cur_index;
};

#endif /* NK_KV_H */
