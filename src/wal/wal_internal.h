/*
 * wal_internal.h: the on-disk format of the WAL (docs/format/wal.md) as pure
 * functions over byte buffers, shared by the log itself (wal.c), its tests
 * and its fuzz target. Nothing here does I/O, allocates or keeps state, so it
 * is thread-safe.
 */
#ifndef NK_WAL_INTERNAL_H
#define NK_WAL_INTERNAL_H

#include "util/util.h"

#define WAL_SEGMENT_MAGIC       "NORIKVWL" /* 8 bytes, no terminator on disk */
#define WAL_FORMAT_VERSION      1u
#define WAL_SEGMENT_HEADER_SIZE 32u
#define WAL_RECORD_HEADER_SIZE  13u
/* The format's hard cap on one payload; wal_options.max_record_size <= this. */
#define WAL_RECORD_SIZE_LIMIT (1u << 30)
/* Segment file names: 20 decimal digits and this suffix. */
#define WAL_SEGMENT_SUFFIX ".wal"
#define WAL_SEGMENT_NAME_LEN (20 + 4)

void wal_encode_segment_header(uint8_t out[WAL_SEGMENT_HEADER_SIZE], uint64_t segment);
/*
 * Checks a segment header: n bytes available at p, the file's name for
 * messages, and the number its name says it has. NK_DATA_LOSS when anything
 * is wrong.
 */
nk_status wal_check_segment_header(const uint8_t *p, size_t n, const char *name,
                                   uint64_t segment);

/*
 * Record header: header checksum (4), payload checksum (4), length (4),
 * type (1). The header checksum covers the other header fields and the
 * record's position (segment and offset), so that bytes copied or left over
 * from elsewhere never pass for a record here, and so that a scan for
 * records after damage can reject a candidate position in O(1) before
 * checksumming its payload. payload_crc is nk_crc32c(payload) (unmasked),
 * computed before the position is known.
 */
static inline uint32_t wal_rec_len(const uint8_t *hdr)
{
    return nk_dec_fixed32(hdr + 8);
}
static inline uint8_t wal_rec_type(const uint8_t *hdr)
{
    return hdr[12];
}
/* Unmasked header checksum of a header whose bytes 4..12 are filled in. */
uint32_t wal_record_header_crc(const uint8_t *hdr, uint64_t segment, uint64_t offset);
void wal_encode_record_header(uint8_t out[WAL_RECORD_HEADER_SIZE], uint32_t payload_crc,
                              uint32_t len, uint8_t type, uint64_t segment, uint64_t offset);

enum wal_rec_check {
    WAL_REC_OK,  /* valid (the header, or the whole record) */
    WAL_REC_END, /* 13 zero bytes (or nothing, or only zeros up to the limit): end of data */
    WAL_REC_BAD, /* cut short, type 0 with non-zero bytes, or checksum mismatch */
};

/*
 * Checks the record header at p (segment offset `offset`), with `avail`
 * bytes readable before the end of data: header checksum, type, and that the
 * payload fits in `avail`. Reads only the header. On WAL_REC_OK *len and
 * *type are set.
 */
enum wal_rec_check wal_check_record_header(const uint8_t *p, size_t avail, uint64_t segment,
                                           uint64_t offset, uint32_t *len, uint8_t *type);
/*
 * Checks a whole record (header as above, then the payload checksum). On
 * WAL_REC_OK, *len and *type are set and the payload is
 * p + WAL_RECORD_HEADER_SIZE.
 */
enum wal_rec_check wal_check_record(const uint8_t *p, size_t avail, uint64_t segment,
                                    uint64_t offset, uint32_t *len, uint8_t *type);

struct wal_scan_result {
    uint64_t end;        /* offset just past the last valid record of the valid prefix */
    uint64_t records;    /* records in the valid prefix */
    uint64_t dirty_end;  /* offset just past the last non-zero byte at or after `end` */
    uint64_t next_valid; /* a valid record at an offset > end, or 0 when there is none */
};

/*
 * Scans one whole segment file held in memory. Fails (NK_DATA_LOSS) only
 * on a bad header; otherwise fills *r, and the caller decides from it
 * (docs/format/wal.md, "Recovery"):
 *   dirty_end == end                 clean end of data
 *   next_valid != 0                  damage in the middle of the log
 *   dirty_end > end, next_valid == 0 a torn tail (acceptable only in the
 *                                    newest segment)
 */
nk_status wal_scan_segment(const uint8_t *p, size_t n, const char *name, uint64_t segment,
                           struct wal_scan_result *r);

/* "<20 digits>.wal" -> number; false for any other name. */
bool wal_parse_segment_name(const char *name, uint64_t *segment);

#endif /* NK_WAL_INTERNAL_H */
