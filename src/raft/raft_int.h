/*
 * raft_int.h: internals shared by the files of src/raft (not public).
 *
 * struct raft_log is the log as the protocol sees it: the stable part behind
 * the storage vtable, followed by the unstable part (entries and possibly a
 * snapshot that the caller has not yet persisted), plus the commit and
 * applied cursors.
 */
#ifndef NK_RAFT_INT_H
#define NK_RAFT_INT_H

#include "raft/raft.h"

struct raft_unstable {
    struct raft_entry *ents; /* data points into buf */
    size_t n, cap;
    uint8_t *buf; /* the entries' data, in log order */
    size_t buf_len, buf_cap;
    uint64_t offset;            /* index of ents[0] */
    struct raft_snapshot *snap; /* owned (with its data), or NULL */
};

struct raft_log {
    struct raft_storage st;
    struct raft_unstable u;
    uint64_t committed;
    uint64_t applied;
};

void raft_log_init(struct raft_log *l, const struct raft_storage *st);
void raft_log_free(struct raft_log *l);
uint64_t raft_log_first(const struct raft_log *l);
uint64_t raft_log_last(const struct raft_log *l);
/* NK_OUT_OF_RANGE: compacted; NK_NOT_FOUND: beyond the last index. */
nk_status raft_log_term_of(const struct raft_log *l, uint64_t i, uint64_t *term);
/* term of i, or 0 when it is not available */
uint64_t raft_log_term0(const struct raft_log *l, uint64_t i);
uint64_t raft_log_last_term(const struct raft_log *l);
bool raft_log_match_term(const struct raft_log *l, uint64_t i, uint64_t term);
bool raft_log_up_to_date(const struct raft_log *l, uint64_t last, uint64_t term);
/* largest index <= i whose term is <= term (0 when none is known) */
uint64_t raft_log_find_conflict_by_term(const struct raft_log *l, uint64_t i, uint64_t term);
/* Appends (copying data) after truncating any conflicting suffix of the
 * unstable part; ents[0].index must be in (committed, last + 1]. */
void raft_log_append(struct raft_log *l, const struct raft_entry *ents, size_t n);
/* The follower's append: returns false when (prev, prev_term) does not
 * match; otherwise appends what is new, sets *last_new and *first_new (the
 * position in ents of the first entry written; n when none was). */
bool raft_log_maybe_append(struct raft_log *l, uint64_t prev, uint64_t prev_term,
                           const struct raft_entry *ents, size_t n, uint64_t *last_new,
                           size_t *first_new);
void raft_log_commit_to(struct raft_log *l, uint64_t c);
/* Entries [lo, hi), at most max_n of them and max_bytes of data (at least
 * one), copied into arena. NK_OUT_OF_RANGE when lo is compacted. */
/* nowait: read stable entries through storage.entries_nowait when it is set;
 * NK_UNAVAILABLE then means "not in memory yet" (see raft.h). */
nk_status raft_log_slice_ex(const struct raft_log *l, uint64_t lo, uint64_t hi, uint64_t max_bytes,
                            size_t max_n, struct nk_arena *arena, struct raft_entry **out,
                            size_t *n, bool nowait);
nk_status raft_log_slice(const struct raft_log *l, uint64_t lo, uint64_t hi, uint64_t max_bytes,
                         size_t max_n, struct nk_arena *arena, struct raft_entry **out, size_t *n);
/* Highest index that is committed and durable (may be applied). */
uint64_t raft_log_apply_limit(const struct raft_log *l);
void raft_log_stable_to(struct raft_log *l, size_t n);
void raft_log_stable_snap(struct raft_log *l);
void raft_log_restore(struct raft_log *l, const struct raft_snapshot *s);

#endif /* NK_RAFT_INT_H */
