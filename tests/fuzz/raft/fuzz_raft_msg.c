/*
 * fuzz_raft_msg.c: the raft peer-message decoder (and the conf change
 * decoder) against arbitrary bytes. Whatever decodes must re-encode and
 * decode to the same message; nothing may crash or read out of bounds.
 */
#include <stdlib.h>

#include "raft/raft.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
size_t LLVMFuzzerSeedCorpus(const uint8_t ***out, const size_t **lens);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct nk_arena a;
    nk_arena_init(&a);
    struct raft_msg m;
    nk_status s = raft_msg_decode(data, size, &a, &m);
    if (nk_ok(s)) {
        struct nk_buf b;
        nk_buf_init(&b);
        raft_msg_encode(&m, &b);
        struct raft_msg m2;
        nk_status s2 = raft_msg_decode(b.data, b.len, &a, &m2);
        if (!nk_ok(s2) || m2.type != m.type || m2.term != m.term || m2.n_entries != m.n_entries ||
            !m2.snapshot != !m.snapshot)
            abort();
        for (uint32_t i = 0; i < m.n_entries; i++)
            if (m.entries[i].len != m2.entries[i].len ||
                (m.entries[i].len &&
                 memcmp(m.entries[i].data, m2.entries[i].data, m.entries[i].len)))
                abort();
        nk_buf_free(&b);
    } else if (s.code != NK_DATA_LOSS || !s.msg) {
        abort(); /* rejections are DATA_LOSS with a message */
    }
    nk_status_free(&s);
    nk_arena_free(&a);

    struct raft_conf_change cc;
    s = raft_conf_change_decode(data, size, &cc);
    if (nk_ok(s) && (cc.conf.n_voters == 0 || cc.conf.n_voters > RAFT_MAX_MEMBERS))
        abort();
    nk_status_free(&s);
    return 0;
}

size_t LLVMFuzzerSeedCorpus(const uint8_t ***out, const size_t **lens)
{
    static const uint8_t *ptrs[4];
    static size_t ls[4];
    static struct nk_buf bufs[4];
    static uint8_t d[] = "payload";
    struct raft_entry ents[2] = {{.term = 2, .index = 6, .len = 7, .data = d},
                                 {.term = 3, .index = 7, .type = RAFT_ENTRY_NOOP}};
    struct raft_snapshot snap = {.index = 5, .term = 2, .len = 7, .data = d};
    snap.conf.n_voters = 2;
    snap.conf.voters[0] = 1;
    snap.conf.voters[1] = 2;
    struct raft_msg ms[4] = {
        {.type = RAFT_MSG_APPEND, .from = 1, .to = 2, .term = 3, .index = 5, .log_term = 2,
         .commit = 5, .n_entries = 2, .entries = ents},
        {.type = RAFT_MSG_APPEND_RESP, .from = 2, .to = 1, .term = 3, .reject = true, .index = 5,
         .reject_hint = 3, .log_term = 1},
        {.type = RAFT_MSG_HEARTBEAT, .from = 1, .to = 2, .term = 3, .commit = 5, .ctx = 9},
        {.type = RAFT_MSG_SNAPSHOT, .from = 1, .to = 2, .term = 3, .snapshot = &snap},
    };
    for (int i = 0; i < 4; i++) {
        nk_buf_free(&bufs[i]);
        raft_msg_encode(&ms[i], &bufs[i]);
        ptrs[i] = bufs[i].data;
        ls[i] = bufs[i].len;
    }
    *out = ptrs;
    *lens = ls;
    return 4;
}
