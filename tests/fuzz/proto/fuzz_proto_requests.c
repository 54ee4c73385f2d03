/*
 * fuzz_proto_requests: untrusted request bytes through protobuf-c.
 *
 * Every request message type a client can send (the request of every method
 * in norikv.proto) gets the same input. The property: unpack either fails
 * cleanly or yields a message that packs again and frees without leaking
 * (ASan/LSan in the sanitizer build); when it holds only known fields, its
 * packed bytes unpack again and re-pack to the very same bytes.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "norikv/v1/norikv.pb-c.h"
#include "util/util.h"

static const ProtobufCMessageDescriptor *const requests[] = {
    &norikv__v1__put_request__descriptor,
    &norikv__v1__get_request__descriptor,
    &norikv__v1__delete_request__descriptor,
    &norikv__v1__cluster_view__descriptor, /* Meta.WatchCluster */
    &norikv__v1__shard_info__descriptor,   /* Admin.TransferShard, SnapshotShard */
    &norikv__v1__create_vector_index_request__descriptor,
    &norikv__v1__drop_vector_index_request__descriptor,
    &norikv__v1__vector_insert_request__descriptor,
    &norikv__v1__vector_delete_request__descriptor,
    &norikv__v1__vector_search_request__descriptor,
    &norikv__v1__vector_get_request__descriptor,
    &norikv__v1__range_request__descriptor, /* Kv.Range (ext) */
    &norikv__v1__batch_request__descriptor, /* Kv.Batch (ext) */
    &norikv__v1__watch_request__descriptor, /* Kv.Watch (ext) */
    &norikv__v1__events_request__descriptor, /* Meta.WatchEvents (ext) */
    &norikv__v1__drain_node_request__descriptor,  /* Admin.DrainNode (ext) */
    &norikv__v1__remove_node_request__descriptor, /* Admin.RemoveNode (ext) */
    &norikv__v1__placement_request__descriptor,   /* Admin.GetPlacement (ext) */
};

static void dump(const char *what, const uint8_t *p, size_t n)
{
    fprintf(stderr, "%s (%zu bytes):", what, n);
    for (size_t i = 0; i < n && i < 256; i++)
        fprintf(stderr, " %02x", p[i]);
    fprintf(stderr, "\n");
}

/* Unknown fields anywhere in the message tree. */
static bool has_unknown(const ProtobufCMessage *m)
{
    if (!m)
        return false;
    if (m->n_unknown_fields)
        return true;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        const char *base = (const char *)m;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            ProtobufCMessage *const *arr = *(ProtobufCMessage *const *const *)(base + f->offset);
            for (size_t k = 0; k < n; k++)
                if (has_unknown(arr[k]))
                    return true;
        } else if (has_unknown(*(ProtobufCMessage *const *)(base + f->offset))) {
            return true;
        }
    }
    return false;
}

static void check_one(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t size)
{
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, size, data);
    if (!m)
        return;
    NK_ASSERT(m->descriptor == d);
    /* protobuf-c keeps unknown fields, and accepts an overlong tag of field
     * number 0 as one, which it re-packs as a one-byte 0 tag it then refuses.
     * Harmless (the server never re-packs requests), so the round trip is
     * checked only for messages made of known fields. */
    bool unknown = has_unknown(m);
    size_t n1 = protobuf_c_message_get_packed_size(m);
    uint8_t *b1 = nk_malloc(n1 ? n1 : 1);
    NK_ASSERT(protobuf_c_message_pack(m, b1) == n1);
    protobuf_c_message_free_unpacked(m, NULL);
    if (unknown) {
        free(b1);
        return;
    }

    ProtobufCMessage *m2 = protobuf_c_message_unpack(d, NULL, n1, b1);
    if (!m2) {
        dump("input", data, size);
        dump("re-packed", b1, n1);
    }
    if (!m2)
        nk_panic("%s: re-packed bytes (%zu) do not unpack", d->name, n1);
    size_t n2 = protobuf_c_message_get_packed_size(m2);
    uint8_t *b2 = nk_malloc(n2 ? n2 : 1);
    NK_ASSERT(protobuf_c_message_pack(m2, b2) == n2);
    if (n1 != n2 || memcmp(b1, b2, n1) != 0)
        nk_panic("%s: packing is not stable (%zu vs %zu bytes)", d->name, n1, n2);
    protobuf_c_message_free_unpacked(m2, NULL);
    free(b1);
    free(b2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (size_t i = 0; i < NK_ARRAY_LEN(requests); i++)
        check_one(requests[i], data, size);
    return 0;
}

/* Valid messages of every type, so that mutations start from real shapes. */
size_t LLVMFuzzerSeedCorpus(const uint8_t ***out, const size_t **lens)
{
    static const uint8_t *seeds[8];
    static size_t seed_lens[8];
    size_t n = 0;
    uint8_t *b;

    Norikv__V1__Version ver = NORIKV__V1__VERSION__INIT;
    ver.term = 3;
    ver.index = 1u << 20;

    Norikv__V1__PutRequest put = NORIKV__V1__PUT_REQUEST__INIT;
    put.key = (ProtobufCBinaryData){5, (uint8_t *)"hello"};
    put.value = (ProtobufCBinaryData){5, (uint8_t *)"world"};
    put.ttl_ms = 60000;
    put.idempotency_key = "req-1";
    put.if_match = &ver;
    put.if_not_exists = 1;
    seed_lens[n] = norikv__v1__put_request__get_packed_size(&put);
    b = nk_malloc(seed_lens[n]);
    norikv__v1__put_request__pack(&put, b);
    seeds[n++] = b;

    Norikv__V1__GetRequest get = NORIKV__V1__GET_REQUEST__INIT;
    get.key = (ProtobufCBinaryData){3, (uint8_t *)"key"};
    get.consistency = "linearizable";
    seed_lens[n] = norikv__v1__get_request__get_packed_size(&get);
    b = nk_malloc(seed_lens[n]);
    norikv__v1__get_request__pack(&get, b);
    seeds[n++] = b;

    Norikv__V1__DeleteRequest del = NORIKV__V1__DELETE_REQUEST__INIT;
    del.key = (ProtobufCBinaryData){3, (uint8_t *)"key"};
    del.idempotency_key = "d";
    del.if_match = &ver;
    seed_lens[n] = norikv__v1__delete_request__get_packed_size(&del);
    b = nk_malloc(seed_lens[n]);
    norikv__v1__delete_request__pack(&del, b);
    seeds[n++] = b;

    Norikv__V1__ClusterNode node = NORIKV__V1__CLUSTER_NODE__INIT;
    node.id = "n1";
    node.addr = "127.0.0.1:9001";
    node.role = "alive";
    Norikv__V1__ClusterNode *nodes[] = {&node};
    Norikv__V1__ShardReplica rep = NORIKV__V1__SHARD_REPLICA__INIT;
    rep.node_id = "n1";
    rep.leader = 1;
    Norikv__V1__ShardReplica *reps[] = {&rep};
    Norikv__V1__ShardInfo shard = NORIKV__V1__SHARD_INFO__INIT;
    shard.id = 309;
    shard.n_replicas = 1;
    shard.replicas = reps;
    Norikv__V1__ShardInfo *shards[] = {&shard};
    Norikv__V1__ClusterView view = NORIKV__V1__CLUSTER_VIEW__INIT;
    view.epoch = 9;
    view.n_nodes = 1;
    view.nodes = nodes;
    view.n_shards = 1;
    view.shards = shards;
    seed_lens[n] = norikv__v1__cluster_view__get_packed_size(&view);
    b = nk_malloc(seed_lens[n]);
    norikv__v1__cluster_view__pack(&view, b);
    seeds[n++] = b;

    float vec[] = {0.5f, -1.0f, 3.25f};
    Norikv__V1__VectorInsertRequest ins = NORIKV__V1__VECTOR_INSERT_REQUEST__INIT;
    ins.namespace_ = "ns";
    ins.id = "v1";
    ins.n_vector = 3;
    ins.vector = vec;
    seed_lens[n] = norikv__v1__vector_insert_request__get_packed_size(&ins);
    b = nk_malloc(seed_lens[n]);
    norikv__v1__vector_insert_request__pack(&ins, b);
    seeds[n++] = b;

    Norikv__V1__VectorSearchRequest srch = NORIKV__V1__VECTOR_SEARCH_REQUEST__INIT;
    srch.namespace_ = "ns";
    srch.n_query = 3;
    srch.query = vec;
    srch.k = 10;
    srch.include_vectors = 1;
    seed_lens[n] = norikv__v1__vector_search_request__get_packed_size(&srch);
    b = nk_malloc(seed_lens[n]);
    norikv__v1__vector_search_request__pack(&srch, b);
    seeds[n++] = b;

    Norikv__V1__CreateVectorIndexRequest cr = NORIKV__V1__CREATE_VECTOR_INDEX_REQUEST__INIT;
    cr.namespace_ = "ns";
    cr.dimensions = 3;
    cr.distance = NORIKV__V1__DISTANCE_FUNCTION__DISTANCE_FUNCTION_COSINE;
    cr.index_type = NORIKV__V1__VECTOR_INDEX_TYPE__VECTOR_INDEX_TYPE_HNSW;
    seed_lens[n] = norikv__v1__create_vector_index_request__get_packed_size(&cr);
    b = nk_malloc(seed_lens[n]);
    norikv__v1__create_vector_index_request__pack(&cr, b);
    seeds[n++] = b;

    *out = seeds;
    *lens = seed_lens;
    return n;
}
