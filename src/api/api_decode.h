/*
 * api_decode.h: decoding a client's protobuf request safely. Not a public
 * header (api/ and its tests only).
 *
 * protobuf-c's unpack has two weaknesses for bytes that come from a client:
 * it allocates whatever the wire asks for (a 2 MiB request of a million
 * empty repeated sub-messages costs ~100 MB of heap), and it hands `string`
 * fields back as C strings, so "lease\0junk" reads as "lease" and invalid
 * UTF-8 passes unnoticed. api_decode() walks the wire bytes first with the
 * message's descriptor, estimating what unpack will allocate (structs,
 * arrays, strings, unknown fields, protobuf-c's own scan bookkeeping) and
 * checking every string field is UTF-8; a request over the bound is refused
 * before anything is allocated. unpack itself then runs with an allocator
 * that refuses to go beyond the same budget, so a flaw in the estimate
 * cannot turn into unbounded memory. String fields the api relies on are
 * read from the wire with their exact length (api_wire_string), never with
 * strlen.
 *
 * Memory: the message returned is freed with
 * protobuf_c_message_free_unpacked(m, NULL). Thread-safe (no shared state).
 */
#ifndef NK_API_DECODE_H
#define NK_API_DECODE_H

#include <protobuf-c/protobuf-c.h>

#include "util/util.h"

/* What one request may cost to decode: twice CONTRACT.md's 2 MiB request
 * limit (a legal request decodes to about its own size). */
#define API_MAX_DECODED_BYTES (4u << 20)

/*
 * Estimates the heap protobuf-c's unpack of `data` as `d` would allocate.
 * Stops early (and returns what it has counted) once the estimate passes
 * `stop_at`, or at malformed input (unpack then refuses it). *bad_utf8
 * receives the descriptor of the first string field that is not valid UTF-8
 * (NULL: none).
 */
size_t api_decode_estimate(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t len,
                           size_t stop_at, const ProtobufCFieldDescriptor **bad_utf8);

/*
 * Decodes `req` as a `d` message with at most `max_bytes` of heap (0:
 * API_MAX_DECODED_BYTES). Errors are INVALID_ARGUMENT naming the message
 * type and the problem: not a valid message, over the decode limit (with the
 * limit), a string field that is not UTF-8 (with the field's name).
 */
nk_status api_decode(const ProtobufCMessageDescriptor *d, struct nk_slice req, size_t max_bytes,
                     ProtobufCMessage **out);

/*
 * The last occurrence of top-level length-delimited field `field` in the
 * wire bytes (protobuf's "last one wins" for singular fields), with its
 * exact length. False when absent (*out: empty). Call only on bytes
 * api_decode() accepted.
 */
bool api_wire_string(struct nk_slice req, uint32_t field, struct nk_slice *out);
/* The same, naming the field as the .proto does (its number is looked up in
 * the descriptor; a name the message lacks is a bug and asserts). */
bool api_wire_field(const ProtobufCMessageDescriptor *d, struct nk_slice req, const char *name,
                    struct nk_slice *out);

/* True when s[0..n) is valid UTF-8 (no overlongs, surrogates or > U+10FFFF). */
bool api_utf8_valid(const uint8_t *s, size_t n);

/*
 * Writes s[0..n) into dst (NUL-terminated, at most cap bytes) as printable
 * ASCII for an error message: other bytes as \xNN, cut with "..." when
 * longer than `max` input bytes. Client bytes never reach a status message
 * raw (a NUL would cut it, invalid UTF-8 would be mangled).
 */
void api_quote(char *dst, size_t cap, const uint8_t *s, size_t n, size_t max);

#endif /* NK_API_DECODE_H */
