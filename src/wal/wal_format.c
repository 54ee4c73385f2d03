/*
 * wal_format.c: encoding and validation of WAL segment headers and records
 * (docs/format/wal.md). Every function here treats its input as untrusted:
 * lengths are checked against what is available before anything is read.
 */
#include <inttypes.h>

#include "wal/wal_internal.h"

void wal_encode_segment_header(uint8_t out[WAL_SEGMENT_HEADER_SIZE], uint64_t segment)
{
    memset(out, 0, WAL_SEGMENT_HEADER_SIZE);
    memcpy(out, WAL_SEGMENT_MAGIC, 8);
    nk_enc_fixed32(out + 8, WAL_FORMAT_VERSION);
    nk_enc_fixed32(out + 12, WAL_SEGMENT_HEADER_SIZE);
    nk_enc_fixed64(out + 16, segment);
    /* bytes 24..27: reserved flags, zero */
    nk_enc_fixed32(out + 28, nk_crc32c_mask(nk_crc32c(out, 28)));
}

nk_status wal_check_segment_header(const uint8_t *p, size_t n, const char *name,
                                   uint64_t segment)
{
    if (n < WAL_SEGMENT_HEADER_SIZE)
        return nk_status_make(NK_DATA_LOSS,
                              "wal segment %s: %zu bytes, shorter than its %u-byte header", name, n,
                              WAL_SEGMENT_HEADER_SIZE);
    if (memcmp(p, WAL_SEGMENT_MAGIC, 8) != 0)
        return nk_status_make(NK_DATA_LOSS, "wal segment %s: bad magic at offset 0", name);
    uint32_t crc = nk_crc32c_unmask(nk_dec_fixed32(p + 28));
    if (crc != nk_crc32c(p, 28))
        return nk_status_make(NK_DATA_LOSS, "wal segment %s: header checksum mismatch at offset 28",
                              name);
    uint32_t version = nk_dec_fixed32(p + 8);
    if (version != WAL_FORMAT_VERSION)
        return nk_status_make(NK_DATA_LOSS, "wal segment %s: unsupported format version %" PRIu32,
                              name, version);
    uint32_t hsize = nk_dec_fixed32(p + 12);
    if (hsize != WAL_SEGMENT_HEADER_SIZE)
        return nk_status_make(NK_DATA_LOSS, "wal segment %s: header size %" PRIu32 ", expected %u",
                              name, hsize, WAL_SEGMENT_HEADER_SIZE);
    uint64_t num = nk_dec_fixed64(p + 16);
    if (num != segment)
        return nk_status_make(NK_DATA_LOSS,
                              "wal segment %s: header says segment %" PRIu64 ", name says %" PRIu64,
                              name, num, segment);
    uint32_t flags = nk_dec_fixed32(p + 24);
    if (flags != 0)
        return nk_status_make(NK_DATA_LOSS, "wal segment %s: unknown flags 0x%" PRIx32, name,
                              flags);
    return NK_OK;
}

uint32_t wal_record_header_crc(const uint8_t *hdr, uint64_t segment, uint64_t offset)
{
    uint8_t t[9 + 16];
    memcpy(t, hdr + 4, 9); /* payload checksum, length, type */
    nk_enc_fixed64(t + 9, segment);
    nk_enc_fixed64(t + 17, offset);
    return nk_crc32c(t, sizeof t);
}

void wal_encode_record_header(uint8_t out[WAL_RECORD_HEADER_SIZE], uint32_t payload_crc,
                              uint32_t len, uint8_t type, uint64_t segment, uint64_t offset)
{
    NK_DASSERT(type != 0);
    nk_enc_fixed32(out + 4, nk_crc32c_mask(payload_crc));
    nk_enc_fixed32(out + 8, len);
    out[12] = type;
    nk_enc_fixed32(out, nk_crc32c_mask(wal_record_header_crc(out, segment, offset)));
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

enum wal_rec_check wal_check_record_header(const uint8_t *p, size_t avail, uint64_t segment,
                                           uint64_t offset, uint32_t *len, uint8_t *type)
{
    if (avail < WAL_RECORD_HEADER_SIZE)
        return all_zero(p, avail) ? WAL_REC_END : WAL_REC_BAD;
    uint8_t t = wal_rec_type(p);
    if (t == 0)
        return all_zero(p, WAL_RECORD_HEADER_SIZE) ? WAL_REC_END : WAL_REC_BAD;
    if (nk_crc32c_unmask(nk_dec_fixed32(p)) != wal_record_header_crc(p, segment, offset))
        return WAL_REC_BAD;
    uint32_t n = wal_rec_len(p);
    if (n > WAL_RECORD_SIZE_LIMIT || (size_t)n > avail - WAL_RECORD_HEADER_SIZE)
        return WAL_REC_BAD;
    *len = n;
    *type = t;
    return WAL_REC_OK;
}

enum wal_rec_check wal_check_record(const uint8_t *p, size_t avail, uint64_t segment,
                                    uint64_t offset, uint32_t *len, uint8_t *type)
{
    uint32_t n;
    uint8_t t;
    enum wal_rec_check c = wal_check_record_header(p, avail, segment, offset, &n, &t);
    if (c != WAL_REC_OK)
        return c;
    uint32_t want = nk_crc32c_unmask(nk_dec_fixed32(p + 4));
    if (nk_crc32c(p + WAL_RECORD_HEADER_SIZE, n) != want)
        return WAL_REC_BAD;
    *len = n;
    *type = t;
    return WAL_REC_OK;
}

/*
 * Offset just past the last non-zero byte in [from, n), or `from` if none.
 * Scans forward, 64 bytes at a time over zeros: the tail of a preallocated
 * segment is megabytes of zeros read through a fresh mapping, and the kernel
 * pages those in quickly only in forward order.
 */
static uint64_t last_nonzero_end(const uint8_t *p, size_t n, size_t from)
{
    size_t last = from;
    size_t i = from;
    while (i < n && (i & 63) != 0) {
        if (p[i])
            last = i + 1;
        i++;
    }
    for (; i + 64 <= n; i += 64) {
        uint64_t v[8];
        memcpy(v, p + i, 64);
        if ((v[0] | v[1] | v[2] | v[3] | v[4] | v[5] | v[6] | v[7]) == 0)
            continue;
        for (size_t k = 64; k > 0; k--)
            if (p[i + k - 1]) {
                last = i + k;
                break;
            }
    }
    for (; i < n; i++)
        if (p[i])
            last = i + 1;
    return last;
}

nk_status wal_scan_segment(const uint8_t *p, size_t n, const char *name, uint64_t segment,
                           struct wal_scan_result *r)
{
    memset(r, 0, sizeof *r);
    NK_TRY(wal_check_segment_header(p, n, name, segment));
    uint64_t off = WAL_SEGMENT_HEADER_SIZE;
    for (;;) {
        uint32_t len;
        uint8_t type;
        if (wal_check_record(p + off, n - off, segment, off, &len, &type) != WAL_REC_OK)
            break;
        off += WAL_RECORD_HEADER_SIZE + (uint64_t)len;
        r->records++;
    }
    r->end = off;
    r->dirty_end = last_nonzero_end(p, n, off);
    /*
     * Is there a valid record anywhere after the point where the valid
     * prefix stops? Only the non-zero stretch can hold one; because a
     * record's checksum covers its own position, stale or embedded bytes
     * do not qualify.
     */
    if (r->dirty_end > off) {
        /*
         * The header checksum rejects almost every candidate in O(1); only
         * a real record header (or a 2^-32 accident) costs a payload CRC, so
         * the scan is linear in the damaged stretch whatever it holds.
         */
        for (uint64_t y = off + 1; y + WAL_RECORD_HEADER_SIZE <= r->dirty_end; y++) {
            uint32_t len;
            uint8_t type;
            if (wal_rec_type(p + y) == 0)
                continue; /* type 0 is never a record */
            if (wal_check_record(p + y, n - y, segment, y, &len, &type) == WAL_REC_OK) {
                r->next_valid = y;
                break;
            }
        }
    }
    return NK_OK;
}

bool wal_parse_segment_name(const char *name, uint64_t *segment)
{
    if (strlen(name) != WAL_SEGMENT_NAME_LEN || strcmp(name + 20, WAL_SEGMENT_SUFFIX) != 0)
        return false;
    uint64_t v = 0;
    for (int i = 0; i < 20; i++) {
        if (name[i] < '0' || name[i] > '9')
            return false;
        uint64_t d = (uint64_t)(name[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *segment = v;
    return true;
}
