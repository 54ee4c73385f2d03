/*
 * decode.c: bounded, length-exact decoding of client requests
 * (api_decode.h says why).
 */
#include <stdio.h>
#include <stdlib.h>

#include "api/api_decode.h"

/*
 * What protobuf-c's unpack (1.x) spends besides the message structs: a
 * 32-byte "scanned member" record per field occurrence while it scans, the
 * first 16 on the stack and the rest in heap slabs of 32, 64, 128, ...
 * records (so at most about twice the records needed, plus one 32-record
 * slab: 64 bytes per occurrence and SCAN_SLAB_BYTES once), and malloc's own
 * header on every allocation. fuzz_api_decode checks the estimate is never
 * below what unpack allocates.
 */
#define SCAN_RECORD_BYTES 72
#define SCAN_SLAB_BYTES 2048
#define SCAN_STACK_RECORDS 16
#define ALLOC_OVERHEAD 16
#define MAX_DEPTH 64

struct wire {
    const uint8_t *p, *end;
};

static bool get_varint(struct wire *w, uint64_t *v)
{
    uint64_t r = 0;
    for (int shift = 0; shift < 70 && w->p < w->end; shift += 7) {
        uint8_t b = *w->p++;
        if (shift < 64)
            r |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = r;
            return true;
        }
    }
    return false;
}

/*
 * One field occurrence: number, wire type and, for length-delimited fields,
 * the payload. False at the end of input or at framing unpack refuses too
 * (a truncated varint or payload, groups, wire types 6 and 7).
 */
static bool next_field(struct wire *w, uint32_t *num, unsigned *wt, const uint8_t **pl,
                       size_t *pl_len)
{
    uint64_t tag, v;
    if (w->p >= w->end || !get_varint(w, &tag))
        return false;
    *num = (uint32_t)(tag >> 3);
    *wt = (unsigned)(tag & 7);
    *pl = NULL;
    *pl_len = 0;
    switch (*wt) {
    case 0: return get_varint(w, &v);
    case 1:
        if (w->end - w->p < 8)
            return false;
        *pl = w->p;
        *pl_len = 8;
        w->p += 8;
        return true;
    case 5:
        if (w->end - w->p < 4)
            return false;
        *pl = w->p;
        *pl_len = 4;
        w->p += 4;
        return true;
    case 2:
        if (!get_varint(w, &v) || v > (uint64_t)(w->end - w->p))
            return false;
        *pl = w->p;
        *pl_len = (size_t)v;
        w->p += v;
        return true;
    default: return false;
    }
}

static size_t scalar_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE: return 8;
    case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE: return sizeof(void *);
    case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
    default: return 4;
    }
}

bool api_utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0) {
            k = 1;
            cp = c & 0x1f;
            min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            k = 2;
            cp = c & 0x0f;
            min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            k = 3;
            cp = c & 0x07;
            min = 0x10000;
        } else {
            return false;
        }
        if (n - i - 1 < k)
            return false;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += k + 1;
    }
    return true;
}

static size_t estimate(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t len,
                       size_t stop_at, const ProtobufCFieldDescriptor **bad_utf8, int depth)
{
    size_t total = d->sizeof_message + ALLOC_OVERHEAD;
    if (depth > MAX_DEPTH)
        return total;
    struct wire w = {data, data + len};
    uint32_t num;
    unsigned wt;
    const uint8_t *pl;
    size_t pl_len;
    bool repeated_seen = false;
    size_t occurrences = 0;
    while (total <= stop_at && next_field(&w, &num, &wt, &pl, &pl_len)) {
        total += SCAN_RECORD_BYTES;
        if (++occurrences == SCAN_STACK_RECORDS + 1)
            total += SCAN_SLAB_BYTES;
        const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(d, num);
        if (!f) { /* kept as an unknown field: a record and a copy of its bytes */
            total += sizeof(ProtobufCMessageUnknownField) + ALLOC_OVERHEAD + pl_len + 10;
            continue;
        }
        bool rep = f->label == PROTOBUF_C_LABEL_REPEATED;
        if (rep && !repeated_seen) {
            total += ALLOC_OVERHEAD; /* the arrays */
            repeated_seen = true;
        }
        if (rep && wt == 2 && f->type != PROTOBUF_C_TYPE_STRING &&
            f->type != PROTOBUF_C_TYPE_BYTES && f->type != PROTOBUF_C_TYPE_MESSAGE) {
            /* packed scalars: at most one element per byte */
            total += pl_len * scalar_size(f->type);
            continue;
        }
        if (rep)
            total += scalar_size(f->type);
        switch (f->type) {
        case PROTOBUF_C_TYPE_STRING:
            if (wt == 2 && bad_utf8 && !*bad_utf8 && !api_utf8_valid(pl, pl_len))
                *bad_utf8 = f;
            total += pl_len + 1 + ALLOC_OVERHEAD;
            break;
        case PROTOBUF_C_TYPE_BYTES: total += pl_len + ALLOC_OVERHEAD; break;
        case PROTOBUF_C_TYPE_MESSAGE:
            if (wt == 2)
                total += estimate(f->descriptor, pl, pl_len, stop_at - NK_MIN(stop_at, total),
                                  bad_utf8, depth + 1);
            break;
        default: break;
        }
    }
    return total;
}

size_t api_decode_estimate(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t len,
                           size_t stop_at, const ProtobufCFieldDescriptor **bad_utf8)
{
    if (bad_utf8)
        *bad_utf8 = NULL;
    return estimate(d, data, len, stop_at, bad_utf8, 0);
}

/* A protobuf-c allocator that refuses to go beyond a byte budget. */
struct budget {
    size_t left;
    bool exhausted;
};

static void *budget_alloc(void *ctx, size_t size)
{
    struct budget *b = ctx;
    size_t cost = size + ALLOC_OVERHEAD;
    if (cost > b->left) {
        b->exhausted = true;
        return NULL;
    }
    b->left -= cost;
    return malloc(size ? size : 1);
}

static void budget_free(void *ctx, void *p)
{
    (void)ctx;
    free(p);
}

nk_status api_decode(const ProtobufCMessageDescriptor *d, struct nk_slice req, size_t max_bytes,
                     ProtobufCMessage **out)
{
    *out = NULL;
    if (!max_bytes)
        max_bytes = API_MAX_DECODED_BYTES;
    const ProtobufCFieldDescriptor *bad = NULL;
    size_t est = api_decode_estimate(d, req.data, req.len, max_bytes, &bad);
    if (est > max_bytes)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "%s request of %zu bytes would take more than %zu bytes to decode "
                              "(the decoded-request limit; too many repeated elements)",
                              d->name, req.len, max_bytes);
    struct budget b = {max_bytes, false};
    ProtobufCAllocator al = {budget_alloc, budget_free, &b};
    ProtobufCMessage *m = protobuf_c_message_unpack(d, &al, req.len, req.data);
    if (!m && b.exhausted)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "%s request of %zu bytes would take more than %zu bytes to decode "
                              "(the decoded-request limit)",
                              d->name, req.len, max_bytes);
    if (!m)
        return nk_status_make(NK_INVALID_ARGUMENT, "request body is not a valid %s", d->name);
    if (bad) {
        protobuf_c_message_free_unpacked(m, NULL);
        return nk_status_make(NK_INVALID_ARGUMENT, "%s.%s is not valid UTF-8", d->name,
                              bad->name);
    }
    *out = m;
    return NK_OK;
}

bool api_wire_string(struct nk_slice req, uint32_t field, struct nk_slice *out)
{
    *out = nk_slice_make(req.data, 0);
    struct wire w = {req.data, req.data + req.len};
    uint32_t num;
    unsigned wt;
    const uint8_t *pl;
    size_t pl_len;
    bool found = false;
    while (next_field(&w, &num, &wt, &pl, &pl_len)) {
        if (num == field && wt == 2) {
            *out = nk_slice_make(pl, pl_len);
            found = true;
        }
    }
    return found;
}

bool api_wire_field(const ProtobufCMessageDescriptor *d, struct nk_slice req, const char *name,
                    struct nk_slice *out)
{
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(d, name);
    NK_ASSERT(f);
    return api_wire_string(req, f->id, out);
}

void api_quote(char *dst, size_t cap, const uint8_t *s, size_t n, size_t max)
{
    if (!cap)
        return;
    size_t o = 0;
    for (size_t i = 0; i < n && i < max; i++) {
        uint8_t c = s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            if (o + 1 >= cap)
                break;
            dst[o++] = (char)c;
        } else {
            if (o + 4 >= cap)
                break;
            o += (size_t)snprintf(dst + o, cap - o, "\\x%02x", c);
        }
    }
    if (n > max && o + 3 < cap) {
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o] = '\0';
}
