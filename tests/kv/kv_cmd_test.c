/* Tests of the KV command codec. */
#include "kv/kv.h"
#include "testlib.h"

static struct kv_cmd put_cmd(void)
{
    return (struct kv_cmd){.op = KV_OP_PUT,
                           .timestamp_ms = 1763800000000ULL,
                           .key = nk_slice_str("user:123"),
                           .value = nk_slice_str("{\"name\":\"Alice\"}"),
                           .ttl_ms = 60000,
                           .has_if_match = true,
                           .if_match_term = 2,
                           .if_match_index = 41,
                           .idem_key = nk_slice_str("order-12345")};
}

NK_TEST(encoded_commands_decode_to_the_same_fields)
{
    struct kv_cmd c = put_cmd(), d;
    struct nk_buf b;
    nk_buf_init(&b);
    kv_cmd_encode(&c, &b);
    NK_REQUIRE_OK(kv_cmd_decode(b.data, b.len, &d));
    NK_CHECK(d.op == KV_OP_PUT && d.timestamp_ms == c.timestamp_ms && d.ttl_ms == 60000);
    NK_CHECK(nk_slice_eq(d.key, c.key) && nk_slice_eq(d.value, c.value));
    NK_CHECK(d.has_if_match && d.if_match_term == 2 && d.if_match_index == 41);
    NK_CHECK(!d.if_not_exists && nk_slice_eq(d.idem_key, c.idem_key));
    NK_CHECK(kv_cmd_expiry_ms(&d) == c.timestamp_ms + 60000);
    nk_buf_free(&b);

    struct kv_cmd del = {.op = KV_OP_DELETE, .timestamp_ms = 1, .key = nk_slice_str("k")};
    nk_buf_init(&b);
    kv_cmd_encode(&del, &b);
    NK_REQUIRE_OK(kv_cmd_decode(b.data, b.len, &d));
    NK_CHECK(d.op == KV_OP_DELETE && d.value.len == 0 && !d.has_if_match);
    nk_buf_free(&b);
}

NK_TEST(every_truncation_of_a_command_is_rejected)
{
    struct kv_cmd c = put_cmd(), d;
    struct nk_buf b;
    nk_buf_init(&b);
    kv_cmd_encode(&c, &b);
    for (size_t n = 0; n < b.len; n++) {
        nk_status s = kv_cmd_decode(b.data, n, &d);
        NK_CHECK(!nk_ok(s));
        nk_status_free(&s);
    }
    /* and a trailing byte too */
    nk_buf_put_u8(&b, 0);
    nk_status s = kv_cmd_decode(b.data, b.len, &d);
    NK_CHECK(s.code == NK_DATA_LOSS && strstr(nk_status_msg(s), "trailing"));
    nk_status_free(&s);
    nk_buf_free(&b);
}

NK_TEST(limits_are_enforced_with_messages_naming_them)
{
    static uint8_t big[KV_MAX_VALUE + 1];
    struct kv_cmd c = {.op = KV_OP_PUT, .key = nk_slice_make(big, KV_MAX_KEY + 1)};
    nk_status s = kv_cmd_validate(&c);
    NK_CHECK(s.code == NK_INVALID_ARGUMENT && strstr(nk_status_msg(s), "1025 bytes") &&
             strstr(nk_status_msg(s), "1024"));
    nk_status_free(&s);
    c.key = nk_slice_make(big, 0);
    s = kv_cmd_validate(&c);
    NK_CHECK(s.code == NK_INVALID_ARGUMENT && strstr(nk_status_msg(s), "empty"));
    nk_status_free(&s);
    c.key = nk_slice_make(big, KV_MAX_KEY); /* exactly the limit is fine */
    c.value = nk_slice_make(big, KV_MAX_VALUE);
    NK_REQUIRE_OK(kv_cmd_validate(&c));
    c.value = nk_slice_make(big, KV_MAX_VALUE + 1);
    s = kv_cmd_validate(&c);
    NK_CHECK(s.code == NK_INVALID_ARGUMENT && strstr(nk_status_msg(s), "value"));
    nk_status_free(&s);
    c.value = nk_slice_make(NULL, 0);
    c.has_if_match = true; /* version 0.0 cannot exist */
    s = kv_cmd_validate(&c);
    NK_CHECK(s.code == NK_INVALID_ARGUMENT);
    nk_status_free(&s);
}

NK_TEST(fingerprint_ignores_timestamp_but_not_parameters)
{
    struct kv_cmd a = put_cmd(), b = put_cmd();
    b.timestamp_ms += 5000;
    NK_CHECK(kv_cmd_fingerprint(&a) == kv_cmd_fingerprint(&b));
    b.value = nk_slice_str("other");
    NK_CHECK(kv_cmd_fingerprint(&a) != kv_cmd_fingerprint(&b));
    b = put_cmd();
    b.ttl_ms = 1;
    NK_CHECK(kv_cmd_fingerprint(&a) != kv_cmd_fingerprint(&b));
    b = put_cmd();
    b.if_match_index = 42;
    NK_CHECK(kv_cmd_fingerprint(&a) != kv_cmd_fingerprint(&b));
}

NK_TEST(unknown_versions_ops_and_flags_are_corruption)
{
    uint8_t bad_ver[] = {2, 1, 0, 1, 'k', 0, 0, 0, 0};
    uint8_t bad_op[] = {1, 9, 0, 1, 'k', 0, 0};
    uint8_t bad_flags[] = {1, 2, 0, 1, 'k', 0x80, 0};
    struct kv_cmd c;
    const uint8_t *in[] = {bad_ver, bad_op, bad_flags};
    size_t ln[] = {sizeof bad_ver, sizeof bad_op, sizeof bad_flags};
    for (int i = 0; i < 3; i++) {
        nk_status s = kv_cmd_decode(in[i], ln[i], &c);
        NK_CHECK(s.code == NK_DATA_LOSS);
        nk_status_free(&s);
    }
    uint8_t ok_del[] = {1, 2, 0, 1, 'k', 0, 0};
    NK_REQUIRE_OK(kv_cmd_decode(ok_del, sizeof ok_del, &c));
}
