/*
 * fuzz_swim_packet.c: the SWIM packet decoder, and a live SWIM member's
 * swim_step, against arbitrary bytes. Whatever decodes must re-encode to a
 * packet that decodes to the same message; nothing may crash or read out of
 * bounds; a rejected packet is DATA_LOSS or FAILED_PRECONDITION with a
 * message. The member's tables stay within their bounds whatever it is fed.
 *
 * The driver's inputs rarely carry a valid checksum, so each input is also
 * tried "resealed": its last four bytes replaced by the right CRC, which
 * lets the mutations reach the field checks and the state machine.
 */
#include <stdlib.h>

#include "swim/swim.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
size_t LLVMFuzzerSeedCorpus(const uint8_t ***out, const size_t **lens);

#define CLUSTER 0x5eedull

static struct swim *member(void)
{
    static struct swim *s;
    static uint64_t now;
    if (!s) {
        struct swim_config c = {.id = 1,
                                .addr = "10.0.0.1:9101",
                                .cluster = CLUSTER,
                                .seed = 1,
                                .max_members = 64,
                                .gossip_max_entries = 32,
                                .gossip_max_bytes = 4096,
                                .max_indirect = 8};
        nk_status st = swim_new(&c, 0, &s);
        if (!nk_ok(st))
            abort();
        swim_add_member(s, 2, "10.0.0.2:9101", 0);
    }
    now += 37;
    swim_tick(s, now);
    return s;
}

static void check(const uint8_t *data, size_t size)
{
    struct swim_msg m, m2;
    nk_status s = swim_msg_decode(data, size, &m);
    if (nk_ok(s)) {
        struct nk_buf b;
        nk_buf_init(&b);
        swim_msg_encode(&m, &b);
        nk_status s2 = swim_msg_decode(b.data, b.len, &m2);
        if (!nk_ok(s2) || m2.type != m.type || m2.flags != m.flags || m2.from != m.from ||
            m2.subject != m.subject || m2.seq != m.seq || m2.n_updates != m.n_updates ||
            !nk_slice_eq(m.from_addr, m2.from_addr) ||
            !nk_slice_eq(m.subject_addr, m2.subject_addr))
            abort();
        for (uint32_t i = 0; i < m.n_updates; i++)
            if (m.updates[i].id != m2.updates[i].id ||
                m.updates[i].incarnation != m2.updates[i].incarnation ||
                !nk_slice_eq(m.updates[i].addr, m2.updates[i].addr))
                abort();
        nk_buf_free(&b);
    } else if (s.code != NK_DATA_LOSS || !s.msg) {
        abort();
    }
    nk_status_free(&s);

    struct swim *w = member();
    s = swim_step(w, 0, data, size);
    if (!nk_ok(s) && ((s.code != NK_DATA_LOSS && s.code != NK_FAILED_PRECONDITION) || !s.msg))
        abort();
    nk_status_free(&s);
    struct swim_output out;
    swim_output(w, &out);
    for (size_t i = 0; i < out.n_packets; i++)
        if (!nk_ok(swim_msg_decode(out.packets[i].data, out.packets[i].len, &m)))
            abort(); /* what a member sends must be valid */
    struct swim_stats st;
    swim_stats(w, &st);
    if (swim_member_count(w) > 64 || st.gossip_entries > 32 || st.gossip_bytes > 4096)
        abort();
    swim_output_clear(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check(data, size);
    if (size > 4 && size <= SWIM_MAX_PACKET) {
        uint8_t *c = malloc(size);
        memcpy(c, data, size);
        nk_enc_fixed32(c + size - 4, nk_crc32c_mask(nk_crc32c(c, size - 4)));
        check(c, size);
        free(c);
    }
    return 0;
}

size_t LLVMFuzzerSeedCorpus(const uint8_t ***out, const size_t **lens)
{
    enum { N = 5 };
    static const uint8_t *ptrs[N];
    static size_t ls[N];
    static struct nk_buf bufs[N];
    for (int i = 0; i < N; i++) {
        uint8_t type = (uint8_t)(i + 1);
        struct swim_msg m = {.type = type,
                             .cluster = CLUSTER,
                             .from = 2,
                             .seq = 5,
                             .subject = type == SWIM_MSG_SYNC ? 0 : 1,
                             .from_addr = nk_slice_str("10.0.0.2:9101"),
                             .n_updates = 3};
        if (type == SWIM_MSG_PING_REQ) {
            m.subject = 3;
            m.subject_addr = nk_slice_str("10.0.0.3:9101");
        }
        m.updates[0] = (struct swim_update){.state = SWIM_ALIVE,
                                            .id = 3,
                                            .incarnation = 2,
                                            .from = 3,
                                            .addr = nk_slice_str("10.0.0.3:9101")};
        m.updates[1] = (struct swim_update){.state = SWIM_SUSPECT,
                                            .id = 1,
                                            .incarnation = 0,
                                            .from = 2,
                                            .addr = nk_slice_str("10.0.0.1:9101")};
        m.updates[2] = (struct swim_update){.state = (uint8_t)(SWIM_DEAD + i % 2),
                                            .id = 4,
                                            .incarnation = 9,
                                            .from = 2,
                                            .addr = nk_slice_str("10.0.0.4:9101")};
        nk_buf_free(&bufs[i]);
        swim_msg_encode(&m, &bufs[i]);
        ptrs[i] = bufs[i].data;
        ls[i] = bufs[i].len;
    }
    *out = ptrs;
    *lens = ls;
    return N;
}
