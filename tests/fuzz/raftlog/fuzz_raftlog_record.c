/* Fuzz target: raft log batch records as recovery decodes them from disk. */
#include "raftlog/raftlog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nk_status s = raftlog_check_record(data, size);
    nk_status_free(&s);
    return 0;
}

size_t LLVMFuzzerSeedCorpus(const uint8_t ***out, const size_t **lens);
size_t LLVMFuzzerSeedCorpus(const uint8_t ***out, const size_t **lens)
{
    static const uint8_t *seeds[1];
    static size_t sl[1];
    struct raftlog_batch *b = raftlog_batch_new();
    struct raftlog_entry e[3] = {{5, 2, 0, {(const uint8_t *)"abc", 3}},
                                 {6, 2, 1, {NULL, 0}},
                                 {7, 3, 0, {(const uint8_t *)"xyzw", 4}}};
    raftlog_batch_entries(b, 3, e, 3);
    struct raftlog_hardstate hs = {3, 1, 6};
    raftlog_batch_hardstate(b, 3, &hs);
    raftlog_batch_compact(b, 3, 5, 2, nk_slice_str("conf"));
    raftlog_batch_entries(b, 9, e, 1);
    struct nk_slice p = raftlog_batch_payload(b);
    seeds[0] = nk_memdup(p.data, p.len); /* kept for the life of the process */
    sl[0] = p.len;
    raftlog_batch_free(b);
    *out = seeds;
    *lens = sl;
    return 1;
}
