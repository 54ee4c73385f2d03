/*
 * raft_codec_test.c: the peer-protocol encoding (docs/format/raft-messages.md)
 * round-trips every message type, and the decoder rejects truncated,
 * oversized, unknown and random input with a status.
 */
#include "raft/raft.h"
#include "testlib.h"

static struct raft_msg sample(uint8_t type, struct raft_entry *ents, struct raft_snapshot *snap)
{
    struct raft_msg m = {.type = type, .from = 3, .to = 70000, .term = 9, .log_term = 8,
                         .index = 41, .commit = 40, .reject_hint = 12, .ctx = 1ull << 40};
    if (type == RAFT_MSG_APPEND) {
        m.n_entries = 3;
        m.entries = ents;
    }
    if (type == RAFT_MSG_SNAPSHOT)
        m.snapshot = snap;
    if (type == RAFT_MSG_APPEND_RESP)
        m.reject = true;
    return m;
}

static void fill(struct raft_entry *ents, struct raft_snapshot *snap)
{
    static uint8_t d0[] = "hello", d2[300];
    for (size_t i = 0; i < sizeof d2; i++)
        d2[i] = (uint8_t)i;
    ents[0] = (struct raft_entry){.term = 8, .index = 42, .type = RAFT_ENTRY_NORMAL, .len = 5,
                                  .data = d0};
    ents[1] = (struct raft_entry){.term = 9, .index = 43, .type = RAFT_ENTRY_NOOP};
    ents[2] = (struct raft_entry){.term = 9, .index = 44, .type = RAFT_ENTRY_NORMAL,
                                  .len = sizeof d2, .data = d2};
    memset(snap, 0, sizeof(*snap));
    snap->index = 40;
    snap->term = 7;
    snap->conf.n_voters = 3;
    snap->conf.voters[0] = 1, snap->conf.voters[1] = 2, snap->conf.voters[2] = 3;
    snap->conf.n_learners = 1;
    snap->conf.learners[0] = 4;
    snap->len = 5;
    snap->data = d0;
}

static bool msg_eq(const struct raft_msg *a, const struct raft_msg *b)
{
    if (a->type != b->type || a->reject != b->reject || a->from != b->from || a->to != b->to ||
        a->term != b->term || a->log_term != b->log_term || a->index != b->index ||
        a->commit != b->commit || a->reject_hint != b->reject_hint || a->ctx != b->ctx ||
        a->n_entries != b->n_entries || !a->snapshot != !b->snapshot)
        return false;
    for (uint32_t i = 0; i < a->n_entries; i++) {
        const struct raft_entry *x = &a->entries[i], *y = &b->entries[i];
        if (x->term != y->term || x->index != y->index || x->type != y->type ||
            x->len != y->len || (x->len && memcmp(x->data, y->data, x->len)))
            return false;
    }
    if (a->snapshot) {
        const struct raft_snapshot *x = a->snapshot, *y = b->snapshot;
        if (x->index != y->index || x->term != y->term || x->len != y->len ||
            memcmp(x->data, y->data, x->len) || memcmp(&x->conf, &y->conf, sizeof(x->conf)))
            return false;
    }
    return true;
}

NK_TEST(every_message_type_round_trips)
{
    struct raft_entry ents[3];
    struct raft_snapshot snap;
    fill(ents, &snap);
    for (uint8_t type = 1; type <= RAFT_MSG_TYPE_MAX; type++) {
        struct raft_msg m = sample(type, ents, &snap), d;
        struct nk_buf b;
        nk_buf_init(&b);
        raft_msg_encode(&m, &b);
        struct nk_arena a;
        nk_arena_init(&a);
        NK_REQUIRE_OK(raft_msg_decode(b.data, b.len, &a, &d));
        NK_CHECK(msg_eq(&m, &d));
        nk_arena_free(&a);
        nk_buf_free(&b);
    }
}

NK_TEST(a_heartbeat_encodes_in_under_twenty_bytes)
{
    struct raft_msg m = {.type = RAFT_MSG_HEARTBEAT, .from = 1, .to = 2, .term = 3,
                         .commit = 1000, .ctx = 5, .index = 100000};
    struct nk_buf b;
    nk_buf_init(&b);
    raft_msg_encode(&m, &b);
    NK_CHECK(b.len < 20);
    nk_buf_free(&b);
}

NK_TEST(every_truncation_of_a_valid_message_is_rejected)
{
    struct raft_entry ents[3];
    struct raft_snapshot snap;
    fill(ents, &snap);
    for (uint8_t type = 1; type <= RAFT_MSG_TYPE_MAX; type++) {
        struct raft_msg m = sample(type, ents, &snap), d;
        struct nk_buf b;
        nk_buf_init(&b);
        raft_msg_encode(&m, &b);
        for (size_t n = 0; n < b.len; n++) {
            uint8_t *copy = nk_malloc(n ? n : 1);
            memcpy(copy, b.data, n);
            struct nk_arena a;
            nk_arena_init(&a);
            nk_status s = raft_msg_decode(copy, n, &a, &d);
            NK_CHECK(s.code == NK_DATA_LOSS);
            nk_status_free(&s);
            nk_arena_free(&a);
            free(copy);
        }
        nk_buf_free(&b);
    }
}

static nk_status decode_bytes(const uint8_t *p, size_t n, char *msg, size_t msgn)
{
    struct nk_arena a;
    nk_arena_init(&a);
    struct raft_msg d;
    nk_status s = raft_msg_decode(p, n, &a, &d);
    snprintf(msg, msgn, "%s", nk_status_msg(s));
    nk_arena_free(&a);
    return s;
}

NK_TEST(unknown_types_flags_trailing_bytes_and_huge_counts_are_rejected_by_name)
{
    char msg[256];
    struct {
        uint8_t bytes[32];
        size_t n;
        const char *want;
    } cases[] = {
        {{0, 0, 1, 2, 3, 4, 5, 6, 7, 8}, 10, "unknown message type 0"},
        {{11, 0, 1, 2, 3, 4, 5, 6, 7, 8}, 10, "unknown message type 11"},
        {{7, 0x80, 1, 2, 3, 4, 5, 6, 7, 8}, 10, "unknown flags"},
        {{7, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, 11, "trailing bytes"},
        /* APPEND claiming 2^31 entries in a few bytes */
        {{1, 2, 1, 2, 3, 0, 0, 0, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x08, 1}, 16, "entry count"},
        {{1, 2, 1, 2, 3, 0, 0, 0, 0, 0, 0x80, 0x80, 0x04, 1}, 14, "entry count"},
        /* entries on a heartbeat */
        {{7, 2, 1, 2, 3, 0, 0, 0, 0, 0, 1, 1, 0, 3, 0}, 15, "carries entries"},
        /* snapshot message without a snapshot */
        {{9, 0, 1, 2, 3, 0, 0, 0, 0, 0}, 10, "without a snapshot"},
        /* entry data length beyond the input */
        {{1, 2, 1, 2, 3, 0, 0, 0, 0, 0, 1, 1, 0, 3, 0x7f}, 15, "entry 0 data"},
        /* overlong varint */
        {{7, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 13, "from"},
    };
    for (size_t i = 0; i < NK_ARRAY_LEN(cases); i++) {
        nk_status s = decode_bytes(cases[i].bytes, cases[i].n, msg, sizeof msg);
        NK_CHECK(s.code == NK_DATA_LOSS);
        if (!strstr(msg, cases[i].want))
            fprintf(stderr, "  case %zu: '%s' lacks '%s'\n", i, msg, cases[i].want);
        NK_CHECK(strstr(msg, cases[i].want) != NULL);
        nk_status_free(&s);
    }
}

NK_TEST(random_and_mutated_frames_never_crash_the_decoder)
{
    struct nk_rng r;
    nk_rng_seed(&r, nk_test_seed());
    struct raft_entry ents[3];
    struct raft_snapshot snap;
    fill(ents, &snap);
    struct nk_buf valid;
    nk_buf_init(&valid);
    struct raft_msg m = sample(RAFT_MSG_APPEND, ents, &snap);
    raft_msg_encode(&m, &valid);
    int ok = 0;
    for (int it = 0; it < 100000; it++) {
        uint8_t buf[512];
        size_t n;
        if (it % 2) {
            n = valid.len;
            memcpy(buf, valid.data, n);
            buf[nk_rng_uniform(&r, n)] ^= (uint8_t)(1 + nk_rng_uniform(&r, 255));
            if (nk_rng_chance(&r, 1, 4))
                n = nk_rng_uniform(&r, n + 1);
        } else {
            n = nk_rng_uniform(&r, sizeof buf);
            for (size_t i = 0; i < n; i++)
                buf[i] = (uint8_t)nk_rng_next(&r);
            if (n)
                buf[0] = (uint8_t)(1 + nk_rng_uniform(&r, RAFT_MSG_TYPE_MAX));
        }
        uint8_t *copy = nk_malloc(n ? n : 1);
        memcpy(copy, buf, n);
        struct nk_arena a;
        nk_arena_init(&a);
        struct raft_msg d;
        nk_status s = raft_msg_decode(copy, n, &a, &d);
        if (nk_ok(s)) {
            ok++;
            /* whatever decodes re-encodes to a message that decodes the same
               (bytes may differ: varints have redundant forms) */
            struct nk_buf b;
            nk_buf_init(&b);
            raft_msg_encode(&d, &b);
            struct raft_msg d2;
            nk_status s2 = raft_msg_decode(b.data, b.len, &a, &d2);
            NK_CHECK(nk_ok(s2) && msg_eq(&d, &d2));
            nk_status_free(&s2);
            nk_buf_free(&b);
        }
        nk_status_free(&s);
        nk_arena_free(&a);
        free(copy);
    }
    fprintf(stderr, "  %d of 100000 inputs decoded\n", ok);
    nk_buf_free(&valid);
}

NK_TEST(conf_changes_round_trip_and_contradictions_are_rejected)
{
    struct raft_conf_change cc = {.kind = RAFT_CC_ENTER_JOINT}, d;
    cc.conf.n_voters = 2;
    cc.conf.voters[0] = 4, cc.conf.voters[1] = 5;
    cc.conf.n_voters_out = 1;
    cc.conf.voters_out[0] = 1;
    cc.conf.n_learners = 1;
    cc.conf.learners[0] = 1; /* demotion: outgoing voter, incoming learner */
    struct nk_buf b;
    nk_buf_init(&b);
    raft_conf_change_encode(&cc, &b);
    NK_REQUIRE_OK(raft_conf_change_decode(b.data, b.len, &d));
    NK_CHECK(memcmp(&cc, &d, sizeof(cc)) == 0);
    nk_buf_free(&b);
    /* a voter that is also a learner */
    cc.conf.learners[0] = 4;
    nk_buf_init(&b);
    raft_conf_change_encode(&cc, &b);
    nk_status s = raft_conf_change_decode(b.data, b.len, &d);
    NK_CHECK(s.code == NK_DATA_LOSS);
    nk_status_free(&s);
    nk_buf_free(&b);
    /* a simple change with outgoing voters */
    cc.kind = RAFT_CC_SIMPLE;
    cc.conf.n_learners = 0;
    nk_buf_init(&b);
    raft_conf_change_encode(&cc, &b);
    s = raft_conf_change_decode(b.data, b.len, &d);
    NK_CHECK(s.code == NK_DATA_LOSS);
    nk_status_free(&s);
    nk_buf_free(&b);
}

NK_TEST(memstorage_appends_truncates_snapshots_and_compacts)
{
    struct raft_memstorage *m = raft_memstorage_new();
    struct raft_storage st = raft_memstorage_storage(m);
    struct raft_entry e[5];
    for (int i = 0; i < 5; i++)
        e[i] = (struct raft_entry){.term = 1, .index = (uint64_t)i + 1, .len = 1,
                                   .data = (uint8_t *)"abcde" + i};
    NK_REQUIRE_OK(raft_memstorage_append(m, e, 5));
    NK_CHECK_EQ_U64(st.first_index(m), 1);
    NK_CHECK_EQ_U64(st.last_index(m), 5);
    /* overwrite from 4 with a new term */
    struct raft_entry f = {.term = 2, .index = 4, .len = 1, .data = (uint8_t *)"z"};
    NK_REQUIRE_OK(raft_memstorage_append(m, &f, 1));
    NK_CHECK_EQ_U64(st.last_index(m), 4);
    uint64_t t;
    NK_REQUIRE_OK(st.term(m, 4, &t));
    NK_CHECK_EQ_U64(t, 2);
    /* gaps are refused */
    struct raft_entry g = {.term = 2, .index = 9};
    nk_status s = raft_memstorage_append(m, &g, 1);
    NK_CHECK(s.code == NK_INVALID_ARGUMENT);
    nk_status_free(&s);
    struct raft_conf_state c = {.n_voters = 1, .voters = {1}};
    NK_REQUIRE_OK(raft_memstorage_create_snapshot(m, 3, &c, "s", 1));
    NK_REQUIRE_OK(raft_memstorage_compact(m, 3));
    NK_CHECK_EQ_U64(st.first_index(m), 4);
    NK_REQUIRE_OK(st.term(m, 3, &t)); /* the snapshot's term stays readable */
    NK_CHECK_EQ_U64(t, 1);
    s = st.term(m, 2, &t);
    NK_CHECK(s.code == NK_OUT_OF_RANGE);
    nk_status_free(&s);
    s = st.term(m, 5, &t);
    NK_CHECK(s.code == NK_NOT_FOUND);
    nk_status_free(&s);
    struct nk_arena a;
    nk_arena_init(&a);
    struct raft_entry out[4];
    size_t n;
    NK_REQUIRE_OK(st.entries(m, 4, 5, 100, &a, out, &n));
    NK_CHECK(n == 1 && out[0].data[0] == 'z');
    s = st.entries(m, 3, 5, 100, &a, out, &n);
    NK_CHECK(s.code == NK_OUT_OF_RANGE);
    nk_status_free(&s);
    nk_arena_free(&a);
    /* compaction beyond the snapshot is refused */
    s = raft_memstorage_compact(m, 4);
    NK_CHECK(s.code == NK_FAILED_PRECONDITION);
    nk_status_free(&s);
    raft_memstorage_free(m);
}
