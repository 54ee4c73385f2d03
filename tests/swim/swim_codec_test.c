/*
 * swim_codec_test.c: the SWIM packet codec (docs/format/swim.md): round
 * trips, every truncation and every bit flip rejected, and each malformed
 * field named in the error.
 */
#include "swim/swim.h"
#include "testlib.h"

static struct swim_msg sample(uint8_t type, uint32_t n_updates)
{
    static char addrs[SWIM_MAX_UPDATES][SWIM_MAX_ADDR + 1];
    struct swim_msg m = {.type = type,
                         .flags = type == SWIM_MSG_PING ? SWIM_FLAG_SYNC_REQ : 0,
                         .cluster = 0x1122334455667788ull,
                         .from = 7,
                         .seq = 0xdeadbeef,
                         .subject = type == SWIM_MSG_SYNC ? 0 : 9,
                         .from_addr = nk_slice_str("10.1.2.3:9101")};
    if (type == SWIM_MSG_PING_REQ)
        m.subject_addr = nk_slice_str("[2001:db8::1]:9101");
    m.n_updates = n_updates;
    for (uint32_t i = 0; i < n_updates; i++) {
        /* addresses of every length class, up to the 255-byte maximum */
        size_t len = i == 0 ? SWIM_MAX_ADDR : 1 + (i * 37) % 200;
        memset(addrs[i], 'a' + (char)(i % 26), len);
        addrs[i][len] = 0;
        m.updates[i] = (struct swim_update){.state = (uint8_t)(1 + i % 4),
                                            .id = 1000 + i,
                                            .incarnation = i == 1 ? UINT64_MAX : i * 300,
                                            .from = 7,
                                            .addr = nk_slice_make(addrs[i], len)};
    }
    return m;
}

static bool msg_eq(const struct swim_msg *a, const struct swim_msg *b)
{
    if (a->type != b->type || a->flags != b->flags || a->cluster != b->cluster ||
        a->from != b->from || a->seq != b->seq || a->subject != b->subject ||
        !nk_slice_eq(a->from_addr, b->from_addr) ||
        !nk_slice_eq(a->subject_addr, b->subject_addr) || a->n_updates != b->n_updates)
        return false;
    for (uint32_t i = 0; i < a->n_updates; i++) {
        const struct swim_update *x = &a->updates[i], *y = &b->updates[i];
        if (x->state != y->state || x->id != y->id || x->incarnation != y->incarnation ||
            x->from != y->from || !nk_slice_eq(x->addr, y->addr))
            return false;
    }
    return true;
}

NK_TEST(every_packet_type_round_trips)
{
    for (uint8_t t = 1; t <= SWIM_MSG_TYPE_MAX; t++)
        for (uint32_t n = 0; n <= SWIM_MAX_UPDATES; n += (n < 4 ? 1 : 30)) {
            struct swim_msg m = sample(t, NK_MIN(n, (uint32_t)SWIM_MAX_UPDATES)), d;
            struct nk_buf b;
            nk_buf_init(&b);
            swim_msg_encode(&m, &b);
            NK_REQUIRE_OK(swim_msg_decode(b.data, b.len, &d));
            NK_CHECK(msg_eq(&m, &d));
            /* the size estimate never undercounts (the sender's budget) */
            size_t est = swim_msg_header_len(m.from_addr.len, m.subject_addr.len);
            for (uint32_t i = 0; i < m.n_updates; i++)
                est += swim_update_encoded_len(m.updates[i].addr.len);
            NK_CHECK(b.len <= est);
            nk_buf_free(&b);
        }
}

NK_TEST(every_truncation_is_rejected)
{
    for (uint8_t t = 1; t <= SWIM_MSG_TYPE_MAX; t++) {
        struct swim_msg m = sample(t, 3), d;
        struct nk_buf b;
        nk_buf_init(&b);
        swim_msg_encode(&m, &b);
        for (size_t n = 0; n < b.len; n++) {
            uint8_t *copy = nk_memdup(b.data, n ? n : 1);
            nk_status s = swim_msg_decode(copy, n, &d);
            NK_CHECK(s.code == NK_DATA_LOSS && s.msg);
            nk_status_free(&s);
            free(copy);
        }
        nk_buf_free(&b);
    }
}

NK_TEST(every_bit_flip_is_rejected)
{
    struct swim_msg m = sample(SWIM_MSG_ACK, 4), d;
    struct nk_buf b;
    nk_buf_init(&b);
    swim_msg_encode(&m, &b);
    for (size_t i = 0; i < b.len; i++)
        for (int bit = 0; bit < 8; bit++) {
            b.data[i] ^= (uint8_t)(1u << bit);
            nk_status s = swim_msg_decode(b.data, b.len, &d);
            NK_CHECK(s.code == NK_DATA_LOSS);
            nk_status_free(&s);
            b.data[i] ^= (uint8_t)(1u << bit);
        }
    nk_buf_free(&b);
}

/* Re-seals a hand-edited packet with a valid checksum, so that the field
 * check itself is what rejects it. */
static void reseal(struct nk_buf *b)
{
    uint32_t crc = nk_crc32c_mask(nk_crc32c(b->data, b->len - 4));
    nk_enc_fixed32(b->data + b->len - 4, crc);
}

static void expect_error(struct nk_buf *b, const char *words)
{
    reseal(b);
    struct swim_msg d;
    nk_status s = swim_msg_decode(b->data, b->len, &d);
    NK_CHECK(s.code == NK_DATA_LOSS);
    if (!strstr(nk_status_msg(s), words)) {
        fprintf(stderr, "  expected \"%s\" in \"%s\"\n", words, nk_status_msg(s));
        NK_CHECK(!"error names the field");
    }
    nk_status_free(&s);
}

NK_TEST(malformed_fields_are_rejected_with_their_name)
{
    struct swim_msg m = sample(SWIM_MSG_PING, 2);
    struct nk_buf b;
    nk_buf_init(&b);
    /* header offsets: 0 version, 1 type, 2 flags, 3 cluster, 11 from, 19 seq,
     * 23 subject, 31 sender address length */
    swim_msg_encode(&m, &b);
    b.data[0] = 2;
    struct swim_msg d;
    nk_status s = swim_msg_decode(b.data, b.len, &d);
    NK_CHECK(s.code == NK_DATA_LOSS && strstr(nk_status_msg(s), "version 2"));
    nk_status_free(&s);

    nk_buf_clear(&b);
    swim_msg_encode(&m, &b);
    b.data[1] = 9;
    expect_error(&b, "unknown type 9");

    nk_buf_clear(&b);
    swim_msg_encode(&m, &b);
    b.data[2] = 0x80;
    expect_error(&b, "unknown flags");

    nk_buf_clear(&b);
    swim_msg_encode(&m, &b);
    memset(b.data + 11, 0, 8);
    expect_error(&b, "sender id is 0");

    nk_buf_clear(&b);
    swim_msg_encode(&m, &b);
    memset(b.data + 23, 0, 8);
    expect_error(&b, "PING with subject id 0");

    nk_buf_clear(&b);
    swim_msg_encode(&m, &b);
    b.data[31] = 0;
    expect_error(&b, "empty sender address");

    /* the update count is the byte after the (empty) subject address */
    size_t count_at = 31 + 1 + m.from_addr.len + 1;
    nk_buf_clear(&b);
    swim_msg_encode(&m, &b);
    b.data[count_at] = SWIM_MAX_UPDATES + 1;
    expect_error(&b, "updates, over the limit");

    nk_buf_clear(&b);
    swim_msg_encode(&m, &b);
    b.data[count_at + 1] = 7; /* first update's state */
    expect_error(&b, "unknown state 7");

    nk_buf_clear(&b);
    swim_msg_encode(&m, &b);
    memset(b.data + count_at + 2, 0, 8); /* first update's id */
    expect_error(&b, "member id 0");

    nk_buf_clear(&b);
    swim_msg_encode(&m, &b);
    b.data[count_at] = 1; /* one update announced, two present */
    expect_error(&b, "trailing bytes");

    /* a PING_REQ must name the target's address; others must not carry one */
    struct swim_msg pr = sample(SWIM_MSG_PING_REQ, 0);
    pr.subject_addr = nk_slice_make(NULL, 0);
    pr.type = SWIM_MSG_ACK;
    nk_buf_clear(&b);
    swim_msg_encode(&pr, &b);
    b.data[1] = SWIM_MSG_PING_REQ;
    expect_error(&b, "PING_REQ with a 0-byte subject address");

    nk_buf_clear(&b);
    uint8_t big[SWIM_MAX_PACKET + 1] = {SWIM_WIRE_VERSION};
    s = swim_msg_decode(big, sizeof big, &d);
    NK_CHECK(s.code == NK_DATA_LOSS && strstr(nk_status_msg(s), "limit"));
    nk_status_free(&s);
    nk_buf_free(&b);
}
