/*
 * fuzz_api_decode.c: api_decode's estimate of what protobuf-c's unpack
 * allocates must never be below what unpack really allocates, for every
 * request type the server decodes; otherwise the pre-check could let an
 * amplifying request through to the (budgeted) unpack. Also: api_decode and
 * a plain unpack agree on which inputs are messages, except those api_decode
 * refuses for a string that is not UTF-8 (or, never with these small inputs,
 * for size).
 *
 * Input: byte 0 picks the message type, the rest is the wire bytes.
 */
#include <stdio.h>
#include <stdlib.h>

#include "api/api_decode.h"
#include "norikv/v1/norikv.pb-c.h"

static const ProtobufCMessageDescriptor *const TYPES[] = {
    &norikv__v1__put_request__descriptor,    &norikv__v1__get_request__descriptor,
    &norikv__v1__delete_request__descriptor, &norikv__v1__cluster_view__descriptor,
    &norikv__v1__shard_info__descriptor,     &norikv__v1__vector_insert_request__descriptor,
};

struct counting {
    size_t bytes, allocs;
};

static void *count_alloc(void *ctx, size_t n)
{
    struct counting *c = ctx;
    c->bytes += n;
    c->allocs++;
    return malloc(n ? n : 1);
}

static void count_free(void *ctx, void *p)
{
    (void)ctx;
    free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const ProtobufCMessageDescriptor *d = TYPES[data[0] % NK_ARRAY_LEN(TYPES)];
    struct nk_slice req = nk_slice_make(data + 1, size - 1);
    const ProtobufCFieldDescriptor *bad = NULL;
    size_t est = api_decode_estimate(d, req.data, req.len, SIZE_MAX, &bad);
    struct counting c = {0, 0};
    ProtobufCAllocator al = {count_alloc, count_free, &c};
    ProtobufCMessage *plain = protobuf_c_message_unpack(d, &al, req.len, req.data);
    if (plain) {
        /* malloc's header per allocation is part of the estimate too */
        size_t actual = c.bytes + 16 * c.allocs;
        if (actual > est) {
            fprintf(stderr, "%s: estimate %zu < actual %zu (%zu allocations)\n", d->name, est,
                    actual, c.allocs);
            NK_ASSERT(actual <= est);
        }
        protobuf_c_message_free_unpacked(plain, NULL);
    }
    ProtobufCMessage *m = NULL;
    nk_status s = api_decode(d, req, 0, &m);
    if (nk_ok(s)) {
        NK_ASSERT(plain && m && !bad);
        protobuf_c_message_free_unpacked(m, NULL);
    } else {
        NK_ASSERT(s.code == NK_INVALID_ARGUMENT);
        NK_ASSERT(!plain || bad); /* refused only for a non-UTF-8 string */
        nk_status_free(&s);
    }
    return 0;
}
