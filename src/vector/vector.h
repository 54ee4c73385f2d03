/*
 * vector: vector search for NoriKV — distance kernels, a flat (exact) and an
 * HNSW index behind one interface, and the replicated vector state machine
 * of a shard (commands, apply into the LSM, the in-memory indexes rebuilt
 * from the LSM on start). Design, defaults and limits: docs/vector.md;
 * formats: docs/format/vector-commands.md and docs/format/vector-state.md.
 *
 * The header has four parts, lowest first:
 *   1. distance kernels (pure functions; SIMD chosen once at run time),
 *   2. struct vec_index: one in-memory index (flat or HNSW),
 *   3. the command codec and the validation helpers of the API layer,
 *   4. struct vec_store: every shard's vector state over the node's LSM.
 *
 * Memory: a vec_index owns copies of every vector and id it holds. Search
 * results are copied into a caller-owned struct vec_results (freed with
 * vec_results_free). A decoded vec_cmd borrows its slices (and its vector)
 * from the input bytes. vec_store borrows the LSM; the caller opens and
 * closes it.
 *
 * Thread-safety: kernels and the codec are pure and thread-safe. A vec_index
 * has a readers-writer lock: searches, gets, count and memory may run from
 * any number of threads at once; mutations (insert, delete) take the write
 * lock and so are serialized with everything else on that index. vec_store:
 * vec_apply*, vec_store_load_shard and vec_store_unload_shard are called by
 * one thread (the node's apply step); vec_search, vec_get, vec_index_info
 * and vec_idem_lookup may run concurrently from any thread.
 */
#ifndef NK_VECTOR_H
#define NK_VECTOR_H

#include "util/util.h"

/* ------------------------------------------------------------------ limits */

#define VEC_MAX_DIMS          4096u   /* dimensions of an index: 1..4096 */
#define VEC_MAX_K             1000u   /* k of a search: 1..1000 */
#define VEC_MAX_EF            10000u  /* ef_search / ef_construction upper bound */
#define VEC_MAX_NAMESPACE     255u    /* bytes, >= 1 (one length byte in LSM keys) */
#define VEC_MAX_ID            1024u   /* bytes, >= 1 (as a KV key) */
#define VEC_MAX_IDEM_KEY      512u    /* as KV */
#define VEC_MAX_INDEXES_PER_SHARD 1024u /* namespaces living on one shard */
#define VEC_MIN_M             2u
#define VEC_MAX_M             128u
#define VEC_DEFAULT_M         16u
#define VEC_DEFAULT_EF_CONSTRUCTION 200u
#define VEC_DEFAULT_EF_SEARCH 64u
#define VEC_DEFAULT_MAX_BYTES (1ULL << 30)      /* 1 GiB per index */
#define VEC_MIN_MAX_BYTES     (1ULL << 16)
#define VEC_MAX_MAX_BYTES     (1ULL << 40)

/* ------------------------------------------------------- 1. distances */

/* Values match the proto enum DistanceFunction. */
enum vec_metric {
    VEC_METRIC_L2 = 1,     /* Euclidean: sqrt(sum (a-b)^2) */
    VEC_METRIC_COSINE = 2, /* 1 - a.b / (|a| |b|); 1 when either is the zero vector */
    VEC_METRIC_IP = 3,     /* -(a.b) */
};

/* Values match the proto enum VectorIndexType. */
enum vec_index_type {
    VEC_INDEX_FLAT = 1, /* BRUTE_FORCE: exact linear scan */
    VEC_INDEX_HNSW = 2,
};

/*
 * The kernels. Every implementation (scalar, AVX2+FMA, AVX-512) sums in the
 * same 64 lanes with fused multiply-adds and reduces them in the same fixed
 * order, so all three give bit-identical results on every machine: replicas
 * on different CPUs build identical HNSW graphs. n may be any size >= 0.
 */
float vec_dot(const float *a, const float *b, size_t n);
float vec_l2_sq(const float *a, const float *b, size_t n); /* squared L2 */
float vec_distance(enum vec_metric m, const float *a, const float *b, size_t n);

/* Which implementation runs ("avx512", "avx2", "scalar"). */
const char *vec_kernel_name(void);
/* Forces an implementation (tests and benchmarks); false when the CPU lacks
 * it. "auto" restores the run-time choice. Not thread-safe with searches. */
bool vec_kernel_force(const char *name);

/* ----------------------------------------------------------- 2. indexes */

struct vec_index_options {
    enum vec_index_type type;
    enum vec_metric metric;
    uint32_t dims;
    uint32_t m;               /* HNSW links per node (level 0: 2*m); default 16 */
    uint32_t ef_construction; /* default 200 */
    uint32_t ef_search;       /* default ef of a search; default 64 */
    uint64_t max_bytes;       /* bound of vec_index_memory(); default 1 GiB */
};

/* type HNSW, metric L2, dims 0 (must be set), the defaults above. */
void vec_index_options_default(struct vec_index_options *o);
/* Checks options; the message names the field and its range. */
nk_status vec_index_options_validate(const struct vec_index_options *o);

/* One match of a search. id and vector point into the results' arena. */
struct vec_match {
    const char *id; /* NUL-terminated copy; also id_len bytes */
    uint32_t id_len;
    float distance;
    const float *vector; /* NULL unless include_vectors; dims floats */
};

struct vec_results {
    struct vec_match *m; /* ascending distance, ties by id bytes */
    uint32_t n;
    struct nk_arena arena;
};

void vec_results_init(struct vec_results *r);
void vec_results_free(struct vec_results *r);

struct vec_index;

nk_status vec_index_create(const struct vec_index_options *o, struct vec_index **out);
void vec_index_destroy(struct vec_index *ix);

/*
 * Inserts, or replaces the vector of an existing id (*replaced true).
 * The vector must have dims finite floats. When the index would then use
 * more than max_bytes: NK_RESOURCE_EXHAUSTED naming the bound, and nothing
 * changes. Deterministic: the same sequence of inserts and deletes gives the
 * same graph (levels come from a PRNG seeded by the id's hash).
 */
nk_status vec_index_insert(struct vec_index *ix, struct nk_slice id, const float *v,
                           bool *replaced);
/* *deleted false when the id was absent. */
void vec_index_delete(struct vec_index *ix, struct nk_slice id, bool *deleted);
/* Copies the vector (dims floats) into out when found (out may be NULL). */
bool vec_index_get(struct vec_index *ix, struct nk_slice id, float *out);
/*
 * The k nearest (k >= 1) to q (dims floats). ef: HNSW beam width, 0 for the
 * index default, raised to k when smaller; ignored by flat indexes. Results
 * replace r's contents.
 */
nk_status vec_index_search(struct vec_index *ix, const float *q, uint32_t k, uint32_t ef,
                           bool include_vectors, struct vec_results *r);
uint64_t vec_index_count(struct vec_index *ix);
/*
 * Accounted bytes of the live vectors: a pure function of the set of live
 * ids and the options (so every replica judges max_bytes alike, also after a
 * restart). Real allocations exceed it by at most the tombstones awaiting
 * clean-up (<= 1/4 of the live count, <= 16384/m) and one allocation chunk.
 */
uint64_t vec_index_memory(struct vec_index *ix);
/* Bytes actually allocated (for metrics). */
uint64_t vec_index_allocated(struct vec_index *ix);
/* The accounted bytes one vector with this id adds (vec_index_memory). */
uint64_t vec_index_cost(const struct vec_index_options *o, struct nk_slice id);
const struct vec_index_options *vec_index_get_options(const struct vec_index *ix);

/* ------------------------------------------- 3. commands and validation */

/*
 * Vector commands are Raft entries of the shard that owns the namespace.
 * Their first byte is VEC_CMD_TAG, which no KV command starts with (KV's
 * first byte is its format version, 1), so the node dispatches with
 * vec_cmd_is_vector().
 */
#define VEC_CMD_TAG 0x56 /* 'V' */
#define VEC_CMD_VERSION 1

enum vec_op {
    VEC_OP_CREATE_INDEX = 1,
    VEC_OP_DROP_INDEX = 2,
    VEC_OP_INSERT = 3,
    VEC_OP_DELETE = 4,
};

struct vec_cmd {
    enum vec_op op;
    uint64_t timestamp_ms;  /* leader's wall clock at proposal (idempotency retention) */
    struct nk_slice ns;     /* 1..VEC_MAX_NAMESPACE bytes */
    struct nk_slice id;     /* INSERT, DELETE: 1..VEC_MAX_ID bytes */
    struct vec_index_options opt; /* CREATE_INDEX: every field set (defaults filled in) */
    const uint8_t *vector;  /* INSERT: dims little-endian f32 (may be unaligned) */
    uint32_t dims;          /* INSERT: number of floats at vector */
    struct nk_slice idem_key; /* empty: none */
};

static inline bool vec_cmd_is_vector(const uint8_t *data, size_t n)
{
    return n > 0 && data[0] == VEC_CMD_TAG;
}

/* Checks every field a command carries (limits, NaN/inf); the message names
 * the problem. Used by the API before proposing and by the decoder. */
nk_status vec_cmd_validate(const struct vec_cmd *c);
/* Appends the encoding of c to out. c must be valid. */
void vec_cmd_encode(const struct vec_cmd *c, struct nk_buf *out);
/* Decodes untrusted bytes (NK_DATA_LOSS when malformed); slices point into data. */
nk_status vec_cmd_decode(const void *data, size_t n, struct vec_cmd *c);
/* Idempotency fingerprint: every field but timestamp and idempotency key. */
uint64_t vec_cmd_fingerprint(const struct vec_cmd *c);

/* Validation helpers for the API layer; INVALID_ARGUMENT naming the problem. */
nk_status vec_validate_namespace(struct nk_slice ns);
nk_status vec_validate_id(struct nk_slice id);
nk_status vec_validate_dims(uint64_t dims);
nk_status vec_validate_k(uint64_t k);
/* n floats, n == dims (dims 0: only the count limit), every one finite. */
nk_status vec_validate_vector(const float *v, size_t n, uint32_t dims);
/* Maps the proto enums (0 = unspecified is rejected, naming the field). */
nk_status vec_metric_from_proto(int v, enum vec_metric *out);
nk_status vec_index_type_from_proto(int v, enum vec_index_type *out);

/*
 * Placement: the shard of a namespace, jump(xxhash64(namespace), total).
 * One namespace lives whole on one shard (no partitions; docs/vector.md).
 */
static inline uint32_t vec_shard_for_namespace(struct nk_slice ns, uint32_t total_shards)
{
    return nk_shard_for_key(ns.data, ns.len, total_shards);
}

/* ------------------------------------------------- 4. the state machine */

/* The outcome of applying one command; what the client is told. */
struct vec_result {
    enum nk_code code;   /* OK, NOT_FOUND, ALREADY_EXISTS, INVALID_ARGUMENT,
                          * RESOURCE_EXHAUSTED, DATA_LOSS (undecodable entry) */
    uint64_t term, index; /* Version of the entry (also for failures) */
    bool created;  /* CREATE_INDEX: false when it existed with the same parameters */
    bool dropped;  /* DROP_INDEX: false when it did not exist */
    bool replaced; /* INSERT: an existing id's vector was replaced */
    bool deleted;  /* DELETE: false when the id was absent */
    char msg[200]; /* the error's message ("" on OK) */
};

struct vec_store_options {
    uint64_t idem_retention_ms; /* default 24 h, as KV */
    uint64_t idem_grace_ms;     /* default 1 h, as KV's expiry grace */
};

void vec_store_options_default(struct vec_store_options *o);

struct lsm_db;
struct vec_store;

/* Opens the vector state over db; loads nothing (see vec_store_load_shard). */
nk_status vec_store_open(struct lsm_db *db, const struct vec_store_options *o,
                         struct vec_store **out);
void vec_store_close(struct vec_store *s);

/*
 * Rebuilds the in-memory indexes of a shard from the LSM: at node start for
 * every local shard, and after a snapshot of the shard was installed. Any
 * indexes of that shard already in memory are dropped first.
 */
nk_status vec_store_load_shard(struct vec_store *s, uint16_t shard);
/* The accounted bytes (vec_index_memory) of every index in memory, all
 * shards together: what a node-wide budget is judged by (the API refuses
 * inserts and creates beyond it before proposing: docs/vector.md). Any thread. */
uint64_t vec_store_memory(struct vec_store *s);

/* Forgets a shard's in-memory indexes (replica removed, or before a snapshot
 * install rewrites its key range). The LSM is not touched. */
void vec_store_unload_shard(struct vec_store *s, uint16_t shard);

/*
 * Applies the committed vector command in data (vec_cmd_is_vector) to
 * shard: the in-memory index and one LSM write batch (skip_wal) holding the
 * data, the HNSW graph records that changed, the idempotency record and the
 * shard's applied (term, index) in KV's applied-index record (kv-state.md),
 * with time_ms, the shard's replicated time (kv_shard_time), kept as it is.
 * *res is what the client is told. An entry that does not decode is applied
 * as a no-op with res->code DATA_LOSS. The return status reports storage
 * failures only: the replica must stop (memory may be ahead of the LSM; a
 * restart reloads from the LSM).
 */
nk_status vec_apply(struct vec_store *s, uint16_t shard, uint64_t term, uint64_t index,
                    uint64_t time_ms, const uint8_t *data, size_t n, struct vec_result *res);

/* What the API needs to validate an insert or search before proposing. */
nk_status vec_index_info(struct vec_store *s, uint16_t shard, struct nk_slice ns,
                         struct vec_index_options *o, uint64_t *count, uint64_t *memory,
                         bool *found);

/* Search: NOT_FOUND (naming the namespace) when the index does not exist;
 * INVALID_ARGUMENT on a wrong query length, NaN/inf, or k out of range. */
nk_status vec_search(struct vec_store *s, uint16_t shard, struct nk_slice ns, const float *q,
                     size_t qn, uint32_t k, uint32_t ef, bool include_vectors,
                     struct vec_results *r);
/* Get: NOT_FOUND for a missing index; *found false for a missing id. out
 * receives dims floats (size it with vec_index_info or VEC_MAX_DIMS). */
nk_status vec_get(struct vec_store *s, uint16_t shard, struct nk_slice ns, struct nk_slice id,
                  float *out, uint32_t *dims, bool *found);

/* Stored idempotency result, as kv_idem_lookup does for KV. */
nk_status vec_idem_lookup(struct vec_store *s, uint16_t shard, struct nk_slice idem_key,
                          uint64_t fingerprint, uint64_t now_ms, bool *found, bool *same,
                          struct vec_result *res);

#endif /* NK_VECTOR_H */
