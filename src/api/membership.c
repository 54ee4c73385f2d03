/*
 * membership.c: Admin.DrainNode, Admin.RemoveNode and Admin.GetPlacement
 * (docs/membership.md). Requests are decoded with the bounded decoder;
 * names are checked before the node is asked; errors name the problem.
 */
#include <stdio.h>
#include <string.h>

#include "api/api_decode.h"
#include "api/api_internal.h"
#include "node/node.h"
#include "norikv/v1/norikv.pb-c.h"
#include "rpc/rpc.h"

static void fail_status(struct rpc_call *call, nk_status *s)
{
    rpc_call_fail_status(call, s);
}

/* The member's state and replica count as this node's view shows them. */
static void membership_of(struct api *a, const char *name, Norikv__V1__NodeMembership *out,
                          char *state, size_t cap)
{
    norikv__v1__node_membership__init(out);
    out->node_id = (char *)name;
    snprintf(state, cap, "unknown");
    out->state = state;
    struct node_view v;
    node_view_get(a->node, &v);
    for (uint32_t i = 0; i < v.n_nodes; i++) {
        if (strcmp(v.nodes[i].id, name) != 0)
            continue;
        snprintf(state, cap, "%s", v.nodes[i].role);
        for (uint32_t s = 0; s < v.total_shards; s++)
            for (uint8_t r = 0; r < v.n_replicas[s]; r++)
                out->replicas += v.replicas[s][r] == i;
    }
    node_view_free(&v);
}

static void reply_membership(struct api *a, struct rpc_call *call, const char *name, bool draining)
{
    Norikv__V1__NodeMembership m;
    char state[32];
    membership_of(a, name, &m, state, sizeof state);
    m.draining = draining;
    size_t len = norikv__v1__node_membership__get_packed_size(&m);
    uint8_t *buf = nk_malloc(len ? len : 1);
    norikv__v1__node_membership__pack(&m, buf);
    rpc_call_reply_malloced(call, buf, len);
}

static void on_drain(void *ctx, struct rpc_call *call, struct nk_slice req)
{
    struct api *a = ctx;
    ProtobufCMessage *pm = NULL;
    nk_status s = api_decode(&norikv__v1__drain_node_request__descriptor, req, 0, &pm);
    if (!nk_ok(s)) {
        fail_status(call, &s);
        return;
    }
    Norikv__V1__DrainNodeRequest *m = (Norikv__V1__DrainNodeRequest *)pm;
    char me[128];
    node_self_name(a->node, me, sizeof me);
    const char *want = m->node_id && m->node_id[0] ? m->node_id : NULL;
    if (want && strcmp(want, me) != 0) {
        /* the view knows where that member's clients connect */
        char target_addr[128] = "";
        bool found = false;
        struct node_view v;
        node_view_get(a->node, &v);
        for (uint32_t i = 0; i < v.n_nodes; i++)
            if (strcmp(v.nodes[i].id, want) == 0) {
                found = true;
                snprintf(target_addr, sizeof target_addr, "%s", v.nodes[i].addr);
            }
        node_view_free(&v);
        char msg[400];
        if (found)
            snprintf(msg, sizeof msg,
                     "this is node %s: send DrainNode for %s to that node (%s), or with an empty "
                     "node_id",
                     me, want, target_addr[0] ? target_addr : "address unknown yet");
        else
            snprintf(msg, sizeof msg, "no member named %.128s (this is node %s)", want, me);
        protobuf_c_message_free_unpacked(pm, NULL);
        rpc_call_fail(call, found ? NK_FAILED_PRECONDITION : NK_NOT_FOUND, msg, NULL, 0);
        return;
    }
    protobuf_c_message_free_unpacked(pm, NULL);
    s = node_drain(a->node);
    if (!nk_ok(s)) {
        fail_status(call, &s);
        return;
    }
    reply_membership(a, call, me, true);
}

static void on_remove(void *ctx, struct rpc_call *call, struct nk_slice req)
{
    struct api *a = ctx;
    ProtobufCMessage *pm = NULL;
    nk_status s = api_decode(&norikv__v1__remove_node_request__descriptor, req, 0, &pm);
    if (!nk_ok(s)) {
        fail_status(call, &s);
        return;
    }
    Norikv__V1__RemoveNodeRequest *m = (Norikv__V1__RemoveNodeRequest *)pm;
    if (!m->node_id || !m->node_id[0]) {
        protobuf_c_message_free_unpacked(pm, NULL);
        rpc_call_fail(call, NK_INVALID_ARGUMENT, "node_id is required: the member to remove",
                      NULL, 0);
        return;
    }
    char name[128];
    snprintf(name, sizeof name, "%s", m->node_id);
    protobuf_c_message_free_unpacked(pm, NULL);
    s = node_remove_member(a->node, name);
    if (!nk_ok(s)) {
        fail_status(call, &s);
        return;
    }
    reply_membership(a, call, name, false);
}

static void on_placement(void *ctx, struct rpc_call *call, struct nk_slice req)
{
    struct api *a = ctx;
    ProtobufCMessage *pm = NULL;
    nk_status s = api_decode(&norikv__v1__placement_request__descriptor, req, 0, &pm);
    if (!nk_ok(s)) {
        fail_status(call, &s);
        return;
    }
    protobuf_c_message_free_unpacked(pm, NULL);
    struct nk_buf b;
    nk_buf_init(&b);
    node_placement_json(a->node, &b);
    nk_buf_put_u8(&b, 0);
    Norikv__V1__PlacementResponse r = NORIKV__V1__PLACEMENT_RESPONSE__INIT;
    r.json = (char *)b.data;
    size_t len = norikv__v1__placement_response__get_packed_size(&r);
    uint8_t *buf = nk_malloc(len ? len : 1);
    norikv__v1__placement_response__pack(&r, buf);
    nk_buf_free(&b);
    rpc_call_reply_malloced(call, buf, len);
}

nk_status api_membership_register(struct api *a, struct rpc_server *s)
{
    struct rpc_method ms[] = {
        {"/norikv.v1.Admin/DrainNode", RPC_UNARY, on_drain, NULL, a},
        {"/norikv.v1.Admin/RemoveNode", RPC_UNARY, on_remove, NULL, a},
        {"/norikv.v1.Admin/GetPlacement", RPC_UNARY, on_placement, NULL, a},
    };
    for (size_t i = 0; i < NK_ARRAY_LEN(ms); i++)
        NK_TRY(rpc_server_add_method(s, &ms[i]));
    return NK_OK;
}
