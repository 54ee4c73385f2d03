/*
 * raft_codec.c: the peer-protocol encoding of raft messages and of conf
 * change entries (docs/format/raft-messages.md). The decoder treats its input
 * as hostile: every length is checked against what is left and against the
 * limits in raft.h, and anything unexpected is NK_DATA_LOSS with a message
 * naming the field.
 */
#include <inttypes.h>
#include <stdlib.h>

#include "raft/raft.h"

#define FLAG_REJECT   0x01
#define FLAG_ENTRIES  0x02
#define FLAG_SNAPSHOT 0x04
#define FLAG_KNOWN    0x07

const char *raft_msg_type_name(uint8_t type)
{
    static const char *names[] = {"?",         "APPEND",         "APPEND_RESP", "VOTE",
                                  "VOTE_RESP", "PREVOTE",        "PREVOTE_RESP", "HEARTBEAT",
                                  "HEARTBEAT_RESP", "SNAPSHOT", "TIMEOUT_NOW"};
    return type <= RAFT_MSG_TYPE_MAX ? names[type] : "?";
}

static void put_ids(struct nk_buf *b, const uint64_t *ids, uint8_t n)
{
    nk_buf_put_u8(b, n);
    for (uint8_t i = 0; i < n; i++)
        nk_buf_put_varint64(b, ids[i]);
}

static nk_status get_ids(struct nk_reader *r, const char *what, uint64_t *ids, uint8_t *n)
{
    uint8_t k;
    if (!nk_reader_u8(r, &k))
        return nk_status_make(NK_DATA_LOSS, "raft: truncated %s count", what);
    if (k > RAFT_MAX_MEMBERS)
        return nk_status_make(NK_DATA_LOSS, "raft: %s count %u exceeds %d", what, k,
                              RAFT_MAX_MEMBERS);
    for (uint8_t i = 0; i < k; i++) {
        if (!nk_reader_varint64(r, &ids[i]))
            return nk_status_make(NK_DATA_LOSS, "raft: truncated %s id %u", what, i);
        if (ids[i] == RAFT_NONE)
            return nk_status_make(NK_DATA_LOSS, "raft: %s id %u is zero", what, i);
        for (uint8_t j = 0; j < i; j++)
            if (ids[j] == ids[i])
                return nk_status_make(NK_DATA_LOSS, "raft: %s id %" PRIu64 " repeated", what,
                                      ids[i]);
    }
    *n = k;
    return NK_OK;
}

void raft_msg_encode(const struct raft_msg *m, struct nk_buf *out)
{
    uint8_t flags = (m->reject ? FLAG_REJECT : 0) | (m->n_entries ? FLAG_ENTRIES : 0) |
                    (m->snapshot ? FLAG_SNAPSHOT : 0);
    nk_buf_put_u8(out, m->type);
    nk_buf_put_u8(out, flags);
    nk_buf_put_varint64(out, m->from);
    nk_buf_put_varint64(out, m->to);
    nk_buf_put_varint64(out, m->term);
    nk_buf_put_varint64(out, m->log_term);
    nk_buf_put_varint64(out, m->index);
    nk_buf_put_varint64(out, m->commit);
    nk_buf_put_varint64(out, m->reject_hint);
    nk_buf_put_varint64(out, m->ctx);
    if (m->n_entries) {
        nk_buf_put_varint32(out, m->n_entries);
        nk_buf_put_varint64(out, m->entries[0].index);
        for (uint32_t i = 0; i < m->n_entries; i++) {
            const struct raft_entry *e = &m->entries[i];
            NK_DASSERT(e->index == m->entries[0].index + i);
            nk_buf_put_u8(out, e->type);
            nk_buf_put_varint64(out, e->term);
            nk_buf_put_lenbytes(out, e->data, e->len);
        }
    }
    if (m->snapshot) {
        const struct raft_snapshot *s = m->snapshot;
        nk_buf_put_varint64(out, s->index);
        nk_buf_put_varint64(out, s->term);
        put_ids(out, s->conf.voters, s->conf.n_voters);
        put_ids(out, s->conf.voters_out, s->conf.n_voters_out);
        put_ids(out, s->conf.learners, s->conf.n_learners);
        nk_buf_put_varint64(out, s->len);
        nk_buf_append(out, s->data, s->len);
    }
}

nk_status raft_msg_decode(const uint8_t *p, size_t n, struct nk_arena *arena, struct raft_msg *m)
{
    memset(m, 0, sizeof(*m));
    if (n > RAFT_MSG_MAX_BYTES)
        return nk_status_make(NK_DATA_LOSS, "raft: message of %zu bytes exceeds %u", n,
                              RAFT_MSG_MAX_BYTES);
    struct nk_reader r;
    nk_reader_init(&r, p, n);
    uint8_t type, flags;
    if (!nk_reader_u8(&r, &type) || !nk_reader_u8(&r, &flags))
        return nk_status_make(NK_DATA_LOSS, "raft: truncated message header (%zu bytes)", n);
    if (type < 1 || type > RAFT_MSG_TYPE_MAX)
        return nk_status_make(NK_DATA_LOSS, "raft: unknown message type %u", type);
    if (flags & ~FLAG_KNOWN)
        return nk_status_make(NK_DATA_LOSS, "raft: unknown flags 0x%02x in %s", flags,
                              raft_msg_type_name(type));
    m->type = type;
    m->reject = flags & FLAG_REJECT;
    uint64_t *fields[] = {&m->from,   &m->to,     &m->term,        &m->log_term,
                          &m->index,  &m->commit, &m->reject_hint, &m->ctx};
    static const char *names[] = {"from", "to", "term", "log_term", "index", "commit",
                                  "reject_hint", "ctx"};
    for (size_t i = 0; i < NK_ARRAY_LEN(fields); i++)
        if (!nk_reader_varint64(&r, fields[i]))
            return nk_status_make(NK_DATA_LOSS, "raft: %s: truncated or bad varint field %s",
                                  raft_msg_type_name(type), names[i]);
    if (flags & FLAG_ENTRIES) {
        if (type != RAFT_MSG_APPEND)
            return nk_status_make(NK_DATA_LOSS, "raft: %s carries entries",
                                  raft_msg_type_name(type));
        uint32_t cnt;
        uint64_t first;
        if (!nk_reader_varint32(&r, &cnt) || !nk_reader_varint64(&r, &first))
            return nk_status_make(NK_DATA_LOSS, "raft: truncated entry header");
        if (cnt == 0 || cnt > RAFT_MSG_MAX_ENTRIES)
            return nk_status_make(NK_DATA_LOSS, "raft: entry count %u outside 1..%u", cnt,
                                  RAFT_MSG_MAX_ENTRIES);
        /* every entry takes at least 3 bytes: refuse counts the input cannot hold
           before allocating for them */
        if ((uint64_t)cnt * 3 > nk_reader_left(&r))
            return nk_status_make(NK_DATA_LOSS, "raft: entry count %u exceeds what %zu bytes hold",
                                  cnt, nk_reader_left(&r));
        if (first == 0 || first > UINT64_MAX - cnt || first != m->index + 1)
            return nk_status_make(NK_DATA_LOSS,
                                  "raft: first entry index %" PRIu64 " does not follow index %" PRIu64,
                                  first, m->index);
        m->entries = nk_arena_alloc_aligned(arena, cnt * sizeof(struct raft_entry));
        m->n_entries = cnt;
        uint64_t prev_term = m->log_term;
        for (uint32_t i = 0; i < cnt; i++) {
            struct raft_entry *e = &m->entries[i];
            struct nk_slice d;
            if (!nk_reader_u8(&r, &e->type) || !nk_reader_varint64(&r, &e->term))
                return nk_status_make(NK_DATA_LOSS, "raft: truncated entry %u of %u", i, cnt);
            if (e->type > RAFT_ENTRY_NOOP)
                return nk_status_make(NK_DATA_LOSS, "raft: entry %u has unknown type %u", i,
                                      e->type);
            if (e->term < prev_term || e->term > m->term)
                return nk_status_make(NK_DATA_LOSS,
                                      "raft: entry %u term %" PRIu64 " outside %" PRIu64
                                      "..%" PRIu64,
                                      i, e->term, prev_term, m->term);
            prev_term = e->term;
            if (!nk_reader_lenbytes(&r, RAFT_ENTRY_MAX_BYTES, &d))
                return nk_status_make(NK_DATA_LOSS,
                                      "raft: entry %u data truncated or over %u bytes", i,
                                      RAFT_ENTRY_MAX_BYTES);
            e->index = first + i;
            e->len = (uint32_t)d.len;
            e->data = (uint8_t *)d.data;
        }
    }
    if (flags & FLAG_SNAPSHOT) {
        if (type != RAFT_MSG_SNAPSHOT)
            return nk_status_make(NK_DATA_LOSS, "raft: %s carries a snapshot",
                                  raft_msg_type_name(type));
        struct raft_snapshot *s = nk_arena_alloc_aligned(arena, sizeof(*s));
        memset(s, 0, sizeof(*s));
        if (!nk_reader_varint64(&r, &s->index) || !nk_reader_varint64(&r, &s->term))
            return nk_status_make(NK_DATA_LOSS, "raft: truncated snapshot header");
        NK_TRY(get_ids(&r, "snapshot voter", s->conf.voters, &s->conf.n_voters));
        NK_TRY(get_ids(&r, "snapshot outgoing voter", s->conf.voters_out, &s->conf.n_voters_out));
        NK_TRY(get_ids(&r, "snapshot learner", s->conf.learners, &s->conf.n_learners));
        if (s->term > m->term)
            return nk_status_make(NK_DATA_LOSS, "raft: snapshot term %" PRIu64
                                                " above message term %" PRIu64,
                                  s->term, m->term);
        struct nk_slice d;
        if (!nk_reader_lenbytes(&r, RAFT_SNAPSHOT_MAX_BYTES, &d))
            return nk_status_make(NK_DATA_LOSS, "raft: snapshot data truncated or over %u bytes",
                                  RAFT_SNAPSHOT_MAX_BYTES);
        s->len = d.len;
        s->data = (uint8_t *)d.data;
        m->snapshot = s;
    } else if (type == RAFT_MSG_SNAPSHOT) {
        return nk_status_make(NK_DATA_LOSS, "raft: SNAPSHOT message without a snapshot");
    }
    if (nk_reader_left(&r))
        return nk_status_make(NK_DATA_LOSS, "raft: %zu trailing bytes after %s",
                              nk_reader_left(&r), raft_msg_type_name(type));
    return NK_OK;
}

void raft_conf_change_encode(const struct raft_conf_change *cc, struct nk_buf *out)
{
    nk_buf_put_u8(out, cc->kind);
    put_ids(out, cc->conf.voters, cc->conf.n_voters);
    put_ids(out, cc->conf.voters_out, cc->conf.n_voters_out);
    put_ids(out, cc->conf.learners, cc->conf.n_learners);
}

static bool has_id(const uint64_t *ids, uint8_t n, uint64_t id)
{
    for (uint8_t i = 0; i < n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

nk_status raft_conf_change_decode(const uint8_t *p, size_t n, struct raft_conf_change *cc)
{
    memset(cc, 0, sizeof(*cc));
    struct nk_reader r;
    nk_reader_init(&r, p, n);
    if (!nk_reader_u8(&r, &cc->kind))
        return nk_status_make(NK_DATA_LOSS, "raft: empty conf change");
    if (cc->kind < RAFT_CC_SIMPLE || cc->kind > RAFT_CC_LEAVE_JOINT)
        return nk_status_make(NK_DATA_LOSS, "raft: unknown conf change kind %u", cc->kind);
    struct raft_conf_state *c = &cc->conf;
    NK_TRY(get_ids(&r, "conf change voter", c->voters, &c->n_voters));
    NK_TRY(get_ids(&r, "conf change outgoing voter", c->voters_out, &c->n_voters_out));
    NK_TRY(get_ids(&r, "conf change learner", c->learners, &c->n_learners));
    if (c->n_voters == 0)
        return nk_status_make(NK_DATA_LOSS, "raft: conf change without voters");
    if ((cc->kind == RAFT_CC_ENTER_JOINT) != (c->n_voters_out > 0))
        return nk_status_make(NK_DATA_LOSS, "raft: conf change kind %u with %u outgoing voters",
                              cc->kind, c->n_voters_out);
    for (uint8_t i = 0; i < c->n_learners; i++)
        if (has_id(c->voters, c->n_voters, c->learners[i]))
            return nk_status_make(NK_DATA_LOSS,
                                  "raft: conf change lists %" PRIu64 " as voter and learner",
                                  c->learners[i]);
    if (nk_reader_left(&r))
        return nk_status_make(NK_DATA_LOSS, "raft: %zu trailing bytes after conf change",
                              nk_reader_left(&r));
    return NK_OK;
}
