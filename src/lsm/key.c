/* key.c: internal keys (user key + seq/type trailer) and their total order. */
#include "lsm/internal.h"

bool ik_parse(struct nk_slice ik, struct ikey *out)
{
    if (ik.len < LSM_TRAILER)
        return false;
    uint64_t t = nk_dec_fixed64(ik.data + ik.len - LSM_TRAILER);
    out->user = nk_slice_make(ik.data, ik.len - LSM_TRAILER);
    out->seq = t >> 8;
    out->type = (unsigned)(t & 0xff);
    return out->type <= LSM_T_MAX;
}

void ik_append(struct nk_buf *b, struct nk_slice user, uint64_t seq, unsigned type)
{
    nk_buf_reserve(b, user.len + LSM_TRAILER);
    if (user.len)
        memcpy(b->data + b->len, user.data, user.len);
    nk_enc_fixed64(b->data + b->len + user.len, ik_trailer(seq, type));
    b->len += user.len + LSM_TRAILER;
}

int lsm_user_cmp(struct nk_slice a, struct nk_slice b)
{
    return lsm_bytes_cmp(a.data, a.len, b.data, b.len);
}

/*
 * Keys shorter than a trailer never come from the engine, but a damaged table
 * may hold one; they order as a bare user key with trailer 0 so that the
 * comparator stays total and never reads out of bounds.
 */
int ik_cmp(struct nk_slice a, struct nk_slice b)
{
    size_t al = a.len >= LSM_TRAILER ? a.len - LSM_TRAILER : a.len;
    size_t bl = b.len >= LSM_TRAILER ? b.len - LSM_TRAILER : b.len;
    int c = lsm_bytes_cmp(a.data, al, b.data, bl);
    if (c)
        return c;
    uint64_t ta = a.len >= LSM_TRAILER ? nk_dec_fixed64(a.data + al) : 0;
    uint64_t tb = b.len >= LSM_TRAILER ? nk_dec_fixed64(b.data + bl) : 0;
    return ta > tb ? -1 : (ta < tb ? 1 : 0);
}

static struct nk_slice ik_filter_key(struct nk_slice k)
{
    return ik_user(k);
}

/*
 * Index separators: a short user key between the two blocks' user keys,
 * with the largest trailer (it sorts first among that user key's versions),
 * so that a <= k < b still holds for internal keys. When no shorter user key
 * fits, a itself.
 */
static void ik_separator(struct nk_slice a, struct nk_slice b, struct nk_buf *out)
{
    struct nk_slice ua = ik_user(a), ub = ik_user(b);
    nk_buf_clear(out);
    size_t n = ua.len < ub.len ? ua.len : ub.len, i = 0;
    while (i < n && ua.data[i] == ub.data[i])
        i++;
    if (i < n && ua.data[i] < 0xff && (unsigned)ua.data[i] + 1 < ub.data[i] && i + 1 < ua.len) {
        nk_buf_append(out, ua.data, i + 1);
        out->data[i]++;
        nk_buf_reserve(out, LSM_TRAILER);
        nk_enc_fixed64(out->data + out->len, ik_trailer(LSM_MAX_SEQ, LSM_T_SEEK));
        out->len += LSM_TRAILER;
        NK_DASSERT(ik_cmp(a, nk_slice_make(out->data, out->len)) < 0);
        NK_DASSERT(ik_cmp(nk_slice_make(out->data, out->len), b) < 0);
        return;
    }
    nk_buf_append(out, a.data, a.len);
}

const struct sst_comparator lsm_ik_comparator = {
    .cmp = ik_cmp,
    .filter_key = ik_filter_key,
    .name = "nori.internal_key.v1",
    .separator = ik_separator,
    /* internal keys begin with the user key, which is also the filter key */
    .orders_by_filter_key = true,
};
