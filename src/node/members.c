/*
 * members.c: who is in the cluster, and the CLUSTER file that records it
 * (docs/format/cluster-file.md).
 *
 * A one-node cluster (no seed nodes) has one member whose raft id is 1, as
 * every data directory written before clusters existed records. A cluster
 * bootstrapped from seed nodes learns its members from the peer handshakes:
 * each node dials the seed addresses of its configuration, and once a
 * session is up with every seed it knows every member (identity comes from
 * the handshake, never from an address). Every initial member lists the
 * others as seeds, so all of them arrive at the same member set; the node
 * records it, with the replication factor and total_shards, before it
 * creates a single group, and never bootstraps again.
 *
 * The replicas of each shard at bootstrap are the first RF members by
 * rendezvous hashing of (shard, member id); afterwards a shard's replicas
 * are its Raft configuration, whatever placement says.
 */
#include "node/internal.h"

#include <errno.h>
#include <inttypes.h>
#include <sys/stat.h>
#include <unistd.h>

#include "transport/transport.h"

uint64_t node_raft_id_for(const char *name)
{
    struct nk_buf b;
    nk_buf_init(&b);
    nk_buf_append(&b, "norikv-node:", 12);
    nk_buf_append(&b, name, strlen(name));
    uint64_t h = nk_xxhash64(b.data, b.len) & 0x7fffffffffffffffULL;
    nk_buf_free(&b);
    return h <= SOLO_ID ? h + 2 : h; /* never 0 (no one) nor the solo id */
}

int node_member_index(struct node *n, uint64_t id)
{
    for (uint32_t i = 0; i < n->n_members; i++)
        if (n->members[i].id == id)
            return (int)i;
    return -1;
}

/* ------------------------------------------------------------ placement */

static uint64_t rendezvous_weight(uint32_t shard, uint64_t id)
{
    uint8_t k[12];
    nk_enc_fixed32(k, shard);
    nk_enc_fixed64(k + 4, id);
    return nk_xxhash64(k, sizeof k);
}

void node_placement_replicas(const uint64_t *ids, uint32_t n_ids, uint32_t shard, uint32_t rf,
                             uint64_t *out)
{
    NK_ASSERT(rf >= 1 && rf <= n_ids && n_ids <= NODE_MAX_MEMBERS);
    uint64_t w[NODE_MAX_MEMBERS];
    uint64_t id[NODE_MAX_MEMBERS];
    for (uint32_t i = 0; i < n_ids; i++) {
        w[i] = rendezvous_weight(shard, ids[i]);
        id[i] = ids[i];
    }
    /* the rf highest weights, ties by id (selection: n_ids <= 16) */
    for (uint32_t r = 0; r < rf; r++) {
        uint32_t best = r;
        for (uint32_t i = r + 1; i < n_ids; i++)
            if (w[i] > w[best] || (w[i] == w[best] && id[i] < id[best]))
                best = i;
        uint64_t tw = w[r], ti = id[r];
        w[r] = w[best];
        id[r] = id[best];
        w[best] = tw;
        id[best] = ti;
        out[r] = id[r];
    }
}

/* ----------------------------------------------------------- the file */

static void cluster_path(struct node *n, char *path, size_t cap)
{
    snprintf(path, cap, "%s/CLUSTER", n->data_dir);
}

nk_status node_members_save(struct node *n)
{
    char path[4200];
    cluster_path(n, path, sizeof path);
    struct nk_buf b;
    nk_buf_init(&b);
    char line[512];
    pthread_mutex_lock(&n->vmu);
    int k = snprintf(line, sizeof line,
                     "total_shards=%u\nformat=2\ncluster_id=%016" PRIx64
                     "\nreplication_factor=%u\nself=%" PRIu64 "\n",
                     n->nshards, n->cluster_id, n->rf, n->self_id);
    nk_buf_append(&b, line, (size_t)k);
    if (n->created_ms) {
        k = snprintf(line, sizeof line, "created_ms=%" PRIu64 "\n", n->created_ms);
        nk_buf_append(&b, line, (size_t)k);
    }
    if (n->bootstrapped)
        nk_buf_append(&b, "bootstrapped=1\n", 15);
    if (n->draining)
        nk_buf_append(&b, "draining=1\n", 11);
    for (uint32_t i = 0; i < n->n_members; i++) {
        const struct member *m = &n->members[i];
        k = snprintf(line, sizeof line, "member=%" PRIu64 " %s %s%s\n", m->id, m->name,
                     m->peer_addr[0] ? m->peer_addr : "-",
                     m->swim_state == SWIM_LEFT && m->id != n->self_id ? " left" : "");
        nk_buf_append(&b, line, (size_t)k);
    }
    pthread_mutex_unlock(&n->vmu);
    nk_status s = nk_write_file_atomic(path, b.data, b.len);
    nk_buf_free(&b);
    return s;
}

static nk_status malformed(const char *path, unsigned line, const char *why)
{
    return nk_status_make(NK_DATA_LOSS, "%s line %u: %s", path, line, why);
}

/*
 * Reads CLUSTER. Format 1 (a single "total_shards=N" line, written by
 * one-node servers before clusters existed) is a one-node cluster whose
 * member is this node with the solo id.
 */
nk_status node_members_load(struct node *n, bool *found)
{
    char path[4200];
    cluster_path(n, path, sizeof path);
    uint8_t *d;
    size_t len;
    nk_status s = nk_read_file(path, 64 * 1024, &d, &len);
    *found = false;
    if (s.code == NK_NOT_FOUND) {
        nk_status_free(&s);
        return NK_OK;
    }
    NK_TRY(s);
    *found = true;
    unsigned ts = 0, format = 1, rf = 1, lineno = 0, boot = 0, drain = 0;
    uint64_t cid = 0, self = 0;
    n->n_members = 0;
    char *text = nk_malloc(len + 1);
    memcpy(text, d, len);
    text[len] = 0;
    free(d);
    char *save = NULL;
    for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        lineno++;
        if (sscanf(l, "total_shards=%u", &ts) == 1 || sscanf(l, "format=%u", &format) == 1 ||
            sscanf(l, "cluster_id=%" SCNx64, &cid) == 1 ||
            sscanf(l, "replication_factor=%u", &rf) == 1 || sscanf(l, "self=%" SCNu64, &self) == 1 ||
            sscanf(l, "created_ms=%" SCNu64, &n->created_ms) == 1 ||
            sscanf(l, "bootstrapped=%u", &boot) == 1 || sscanf(l, "draining=%u", &drain) == 1)
            continue;
        uint64_t id;
        char name[128], addr[256] = "-", flag[16] = "";
        int got = sscanf(l, "member=%" SCNu64 " %127s %255s %15s", &id, name, addr, flag);
        if (got >= 2) {
            if (got == 4 && strcmp(flag, "left") != 0) {
                free(text);
                return malformed(path, lineno, "unknown member flag");
            }
            if (n->n_members == NODE_MAX_MEMBERS || id == 0) {
                free(text);
                return malformed(path, lineno, "too many members or a member id 0");
            }
            struct member *m = &n->members[n->n_members++];
            memset(m, 0, sizeof(*m));
            m->id = id;
            snprintf(m->name, sizeof m->name, "%s", name);
            if (strcmp(addr, "-") != 0)
                snprintf(m->peer_addr, sizeof m->peer_addr, "%s", addr);
            if (got == 4)
                m->swim_state = SWIM_LEFT; /* it left the cluster: never a replica again */
            continue;
        }
        free(text);
        return malformed(path, lineno, "unknown line");
    }
    free(text);
    if (ts == 0)
        return malformed(path, lineno, "total_shards is missing");
    if (ts != n->nshards)
        return nk_status_make(NK_FAILED_PRECONDITION,
                              "%s records total_shards=%u but the configuration says %u; "
                              "total_shards is fixed when a cluster is created",
                              path, ts, n->nshards);
    if (format == 1) {
        n->self_id = SOLO_ID;
        n->cluster_id = 0;
        n->rf = 1;
        n->n_members = 1;
        memset(&n->members[0], 0, sizeof n->members[0]);
        n->members[0].id = SOLO_ID;
        snprintf(n->members[0].name, sizeof n->members[0].name, "%s", n->name);
    } else {
        /* rf may exceed the members recorded: a node that joined knows one
         * member until SWIM introduces the rest (placement takes the
         * smaller of the two) */
        if (self == 0 || node_member_index(n, self) < 0 || rf < 1 || rf > 16)
            return malformed(path, lineno, "self, members and replication_factor disagree");
        n->self_id = self;
        n->cluster_id = cid;
        n->rf = rf;
        /* the name is the configuration's: a renamed node keeps its id */
        snprintf(n->members[node_member_index(n, self)].name, sizeof n->members[0].name, "%s",
                 n->name);
    }
    n->clustered = n->n_members > 1;
    n->bootstrapped = boot == 1;
    n->draining = drain == 1;
    return NK_OK;
}

/* -------------------------------------------------------------- bootstrap */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/*
 * Bootstrap of a static cluster: learn the id and name of the node at every
 * seed address (discover.c), retrying while seeds are not up yet (a member
 * that starts late is the normal case), then fix the member set and record
 * it before any group exists. Blocks the opening thread; logs progress every
 * 5 s; gives up only when the node is asked to stop, or when a seed is
 * misconfigured (another total_shards, or this node itself).
 */
nk_status node_members_bootstrap(struct node *n)
{
    uint32_t want = n->opt.n_seed_nodes + 1;
    if (want > NODE_MAX_MEMBERS)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "cluster.seed_nodes lists %u nodes; at most %u members are "
                              "supported",
                              n->opt.n_seed_nodes, NODE_MAX_MEMBERS - 1);
    bool *known = nk_calloc(n->opt.n_seed_nodes, sizeof(bool));
    uint32_t have = 0;
    uint64_t next_log = nk_mono_ms() + 5000;
    nk_status s = NK_OK;
    while (have < n->opt.n_seed_nodes) {
        if (atomic_load_explicit(&n->closed, memory_order_acquire)) {
            s = nk_status_make(NK_UNAVAILABLE, "stopped while waiting for the seed nodes");
            break;
        }
        for (uint32_t i = 0; i < n->opt.n_seed_nodes && nk_ok(s); i++) {
            if (known[i])
                continue;
            uint64_t id = 0;
            char name[128];
            nk_status d = node_discover(n->opt.seed_nodes[i], n->nshards, 1000, &id, name,
                                        sizeof name, NULL);
            if (d.code == NK_FAILED_PRECONDITION) {
                s = d;
                break;
            }
            if (!nk_ok(d)) {
                nk_status_free(&d);
                continue;
            }
            if (id == n->self_id) {
                s = nk_status_make(NK_INVALID_ARGUMENT,
                                   "seed %s is this node itself (node_id %s); list only the "
                                   "other members",
                                   n->opt.seed_nodes[i], n->name);
                break;
            }
            pthread_mutex_lock(&n->vmu);
            if (node_member_index(n, id) >= 0) {
                pthread_mutex_unlock(&n->vmu);
                s = nk_status_make(NK_INVALID_ARGUMENT,
                                   "seeds %s and another address reach the same node %s",
                                   n->opt.seed_nodes[i], name);
                break;
            }
            struct member *m = &n->members[n->n_members++];
            memset(m, 0, sizeof(*m));
            m->id = id;
            snprintf(m->name, sizeof m->name, "%s", name);
            snprintf(m->peer_addr, sizeof m->peer_addr, "%s", n->opt.seed_nodes[i]);
            pthread_mutex_unlock(&n->vmu);
            known[i] = true;
            have++;
            NK_INFO(MODULE, "bootstrap: seed %s is node %s (%016" PRIx64 ")",
                    n->opt.seed_nodes[i], name, id);
        }
        if (!nk_ok(s) || have == n->opt.n_seed_nodes)
            break;
        if (nk_mono_ms() >= next_log) {
            NK_INFO(MODULE, "bootstrap: %u of %u seed nodes answered; waiting for the others",
                    have, n->opt.n_seed_nodes);
            next_log = nk_mono_ms() + 5000;
        }
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
    }
    free(known);
    NK_TRY(s);
    uint64_t ids[NODE_MAX_MEMBERS];
    for (uint32_t i = 0; i < n->n_members; i++)
        ids[i] = n->members[i].id;
    qsort(ids, n->n_members, sizeof ids[0], cmp_u64);
    n->cluster_id = nk_xxhash64(ids, n->n_members * sizeof ids[0]);
    n->rf = n->opt.replication_factor ? n->opt.replication_factor : 3;
    if (n->rf > n->n_members)
        n->rf = n->n_members;
    NK_INFO(MODULE, "bootstrap: cluster %016" PRIx64 " of %u members, replication factor %u",
            n->cluster_id, n->n_members, n->rf);
    return node_members_save(n);
}

/* ------------------------------------------------------------------ join */

/*
 * cluster.join (docs/membership.md "Joining"). A new node (no CLUSTER file)
 * asks the node at the join address who it is (its HELLO: id, name,
 * total_shards, cluster id), refuses a cluster of another total_shards, and
 * records itself as a member of that cluster knowing that one member; SWIM
 * (liveness.c) then introduces it to the others and them to it, and the
 * placement plan moves replicas to it. A node that already has a CLUSTER
 * file only checks that the address is in its own cluster: a data directory
 * of another cluster (a one-node server's included) is refused, naming both.
 * Retries while the address does not answer (it may be starting), logging
 * every 5 s, until the node is asked to stop.
 */
nk_status node_members_join(struct node *n, bool found)
{
    const char *addr = n->opt.join_addr;
    uint64_t id = 0, cid = 0;
    char name[128] = "";
    uint64_t next_log = nk_mono_ms() + 5000;
    for (;;) {
        if (atomic_load_explicit(&n->closed, memory_order_acquire))
            return nk_status_make(NK_UNAVAILABLE, "stopped while waiting for %s to answer", addr);
        nk_status d = node_discover(addr, n->nshards, 1000, &id, name, sizeof name, &cid);
        if (d.code == NK_FAILED_PRECONDITION)
            return nk_status_wrap(d, "cluster.join refused");
        if (nk_ok(d) && cid != 0)
            break;
        if (nk_ok(d) && found && !n->clustered)
            break; /* refused below, whatever that node is */
        nk_status_free(&d);
        if (found && n->clustered)
            return NK_OK; /* a member restarting: its cluster file is what counts */
        if (nk_mono_ms() >= next_log) {
            NK_INFO(MODULE, "join: %s does not answer as a member of a running cluster yet; "
                            "retrying",
                    addr);
            next_log = nk_mono_ms() + 5000;
        }
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (found) {
        if (!n->clustered)
            return nk_status_make(NK_FAILED_PRECONDITION,
                                  "cluster.join refused: this data directory holds a one-node "
                                  "cluster (cluster id %016" PRIx64 ") and %s (node %s) is a member "
                                  "of cluster %016" PRIx64
                                  "; a node joins a cluster with an empty data directory",
                                  n->cluster_id, addr, name, cid);
        if (cid != n->cluster_id)
            return nk_status_make(NK_FAILED_PRECONDITION,
                                  "cluster.join refused: this data directory belongs to cluster "
                                  "%016" PRIx64 " but %s (node %s) is a member of cluster %016" PRIx64
                                  "; a node joins a cluster with an empty data directory",
                                  n->cluster_id, addr, name, cid);
        return NK_OK; /* already a member of that cluster */
    }
    /* A joining node's id is its own, not its name's: a node that comes
     * back with an empty data directory under the same name is a new member
     * (its predecessor's acknowledgements are gone with its disk, so it must
     * never count as that voter), and the old one is retired when the new
     * one's INFO names it (peers.c). */
    uint64_t seed[3] = {nk_wall_ms(), nk_mono_ns(), (uint64_t)getpid()};
    char tagged[192];
    snprintf(tagged, sizeof tagged, "%s#%016" PRIx64, n->name, nk_xxhash64(seed, sizeof seed));
    n->self_id = node_raft_id_for(tagged);
    n->n_members = 1;
    n->members[0] = (struct member){.id = n->self_id, .up = true};
    snprintf(n->members[0].name, sizeof n->members[0].name, "%s", n->name);
    if (id == n->self_id)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "cluster.join %s is this node itself (node_id %s); give the "
                              "address of another member",
                              addr, n->name);
    pthread_mutex_lock(&n->vmu);
    struct member *m = &n->members[n->n_members++];
    memset(m, 0, sizeof(*m));
    m->id = id;
    snprintf(m->name, sizeof m->name, "%s", name);
    snprintf(m->peer_addr, sizeof m->peer_addr, "%s", addr);
    pthread_mutex_unlock(&n->vmu);
    n->cluster_id = cid;
    n->rf = n->opt.replication_factor ? n->opt.replication_factor : 3;
    n->bootstrapped = true; /* replicas come to it by moves, never by placement at open */
    n->rf_provisional = true;
    n->clustered = true;
    NK_INFO(MODULE, "join: cluster %016" PRIx64 " through %s (node %s)", cid, addr, name);
    return node_members_save(n);
}

/*
 * Loop thread: SWIM met a member this node has no record of (one that
 * joined, or one the joiner learns of). It becomes a member: dialed by the
 * transport at the address SWIM gave, recorded in CLUSTER.
 */
void node_members_on_new(struct node *n, const uint8_t *p, size_t len)
{
    struct nk_reader r;
    nk_reader_init(&r, p + 1, len - 1);
    uint64_t id = 0;
    struct nk_slice addr;
    nk_reader_fixed64(&r, &id);
    nk_reader_lenbytes(&r, 255, &addr);
    if (r.bad || id == 0 || id == n->self_id || addr.len == 0)
        return;
    pthread_mutex_lock(&n->vmu);
    if (node_member_index(n, id) >= 0) {
        pthread_mutex_unlock(&n->vmu);
        return;
    }
    if (n->n_members == NODE_MAX_MEMBERS) {
        pthread_mutex_unlock(&n->vmu);
        NK_WARN(MODULE, "member %016" PRIx64 " at %.*s not added: at most %d members", id,
                (int)addr.len, (const char *)addr.data, NODE_MAX_MEMBERS);
        return;
    }
    struct member *m = &n->members[n->n_members];
    memset(m, 0, sizeof(*m));
    m->id = id;
    snprintf(m->name, sizeof m->name, "%016" PRIx64, id); /* until its INFO names it */
    snprintf(m->peer_addr, sizeof m->peer_addr, "%.*s", (int)addr.len, (const char *)addr.data);
    m->swim_state = SWIM_ALIVE;
    n->n_members++;
    n->view_local++;
    pthread_mutex_unlock(&n->vmu);
    nk_status s = transport_add_peer(n->tp, id, m->peer_addr);
    if (s.code == NK_ALREADY_EXISTS)
        nk_status_free(&s);
    if (nk_ok(s))
        s = node_members_save(n);
    if (!nk_ok(s)) {
        NK_ERROR(MODULE, "adding member %016" PRIx64 ": %s", id, nk_status_msg(s));
        nk_status_free(&s);
    }
    NK_INFO(MODULE, "member %016" PRIx64 " at %s joined the cluster", id, m->peer_addr);
    struct obs_event_attrs at = {0};
    obs_attrs_set_node(&at, m->name);
    obs_attrs_set_role(&at, "alive");
    obs_event_emit_attrs(obs_events_default(), OBS_EV_MEMBERSHIP, OBS_NO_SHARD, &at,
                         "member %s joined (peer address %s)", m->name, m->peer_addr);
}
