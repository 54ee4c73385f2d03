/*
 * liveness.c: SWIM failure detection on the peer port (docs/swim.md, "In
 * the node"). A cluster member runs the pure SWIM core (src/swim) on its own
 * thread over a UDP socket bound to the same host:port as the peer
 * transport's TCP listener. Member states (alive, suspect, dead, left) become
 * the roles of the ClusterView; every change bumps the view (the loop
 * recomputes the epoch and tells the watchers) and is an event.
 *
 * Datagrams go to a member at the address this node dials it on (its
 * member record), so a node's view of the network is the same for Raft and
 * for SWIM (a proxy between two nodes carries both); the address SWIM
 * learned from gossip is used only for members the node has no record of.
 * Datagrams from the network are untrusted: the codec rejects what is
 * malformed (counted), and nothing here allocates per datagram.
 *
 * The thread owns the swim state; the node's member roles and counters are
 * published under vmu / as atomics.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "node/internal.h"
#include "swim/swim.h"
#include "transport/transport.h"

#define LV_MAX_DATAGRAM 65536
#define LV_MAX_WAIT_MS  100 /* also bounds how late a stop is noticed */

struct lv_addr {
    char text[SWIM_MAX_ADDR + 1];
    struct sockaddr_storage sa;
    socklen_t len;
    bool ok;
};

struct node_liveness {
    struct node *n;
    struct swim *sw;
    int fd, wake_fd;
    pthread_t thread;
    bool started;
    _Atomic bool stop;
    uint8_t *rx;
    struct lv_addr cache[2 * NODE_MAX_MEMBERS]; /* resolved destinations */
    uint32_t cache_next;
    uint64_t t0_ns;
    uint32_t bound_ms; /* detection bound for the initial member count */
    bool left;         /* swim_leave was called */
};

static uint64_t lv_now(const struct node_liveness *lv)
{
    return (nk_mono_ns() - lv->t0_ns) / 1000000ull;
}

/* Splits "host:port" (IPv6 in brackets) and resolves it numerically or by
 * name; false when it cannot be resolved. */
static bool resolve(const char *addr, struct sockaddr_storage *sa, socklen_t *len)
{
    char host[SWIM_MAX_ADDR + 1];
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || !colon[1])
        return false;
    size_t hl = (size_t)(colon - addr);
    if (hl >= sizeof host)
        return false;
    memcpy(host, addr, hl);
    host[hl] = 0;
    if (host[0] == '[' && hl >= 2 && host[hl - 1] == ']') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = 0;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM};
    struct addrinfo *res = NULL;
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0 || !res)
        return false;
    memcpy(sa, res->ai_addr, res->ai_addrlen);
    *len = (socklen_t)res->ai_addrlen;
    freeaddrinfo(res);
    return true;
}

static const struct lv_addr *lookup(struct node_liveness *lv, const char *addr)
{
    for (size_t i = 0; i < NK_ARRAY_LEN(lv->cache); i++)
        if (lv->cache[i].ok && strcmp(lv->cache[i].text, addr) == 0)
            return &lv->cache[i];
    struct lv_addr *e = &lv->cache[lv->cache_next++ % NK_ARRAY_LEN(lv->cache)];
    memset(e, 0, sizeof *e);
    snprintf(e->text, sizeof e->text, "%s", addr);
    e->ok = resolve(addr, &e->sa, &e->len);
    return e->ok ? e : NULL;
}

/* Where a datagram for member `to` goes: the address this node dials it on. */
static void dest_of(struct node *n, uint64_t to, const char *swim_addr, char *out, size_t cap)
{
    pthread_mutex_lock(&n->vmu);
    int i = node_member_index(n, to);
    if (i >= 0 && n->members[i].peer_addr[0])
        snprintf(out, cap, "%s", n->members[i].peer_addr);
    else
        snprintf(out, cap, "%s", swim_addr);
    pthread_mutex_unlock(&n->vmu);
}

static void note_event(struct node_liveness *lv, const struct swim_event *e)
{
    struct node *n = lv->n;
    char name[128] = "";
    bool changed = false;
    pthread_mutex_lock(&n->vmu);
    int i = node_member_index(n, e->id);
    if (i >= 0 && n->members[i].swim_state != SWIM_LEFT) { /* left is for good */
        changed = n->members[i].swim_state != e->state;
        n->members[i].swim_state = e->state;
        if (changed)
            n->members[i].state_since_ms = nk_mono_ms();
        snprintf(name, sizeof name, "%s", n->members[i].name);
        if (changed)
            n->view_local++;
        if (changed && e->state == SWIM_LEFT)
            atomic_store_explicit(&n->members_dirty, true, memory_order_release);
    }
    pthread_mutex_unlock(&n->vmu);
    if (i < 0 && e->id != n->self_id && e->state == SWIM_ALIVE && e->addr[0]) {
        /* a member this node has no record of: the loop adds it */
        struct nk_buf b;
        nk_buf_init(&b);
        nk_buf_put_u8(&b, NODE_INBOUND_MEMBER);
        nk_buf_put_fixed64(&b, e->id);
        size_t al = strlen(e->addr);
        nk_buf_put_lenbytes(&b, e->addr, al > 255 ? 255 : al);
        node_peers_push_internal(n, e->id, b.data, b.len);
        nk_buf_free(&b);
    }
    if (e->state == e->prev_state)
        return; /* a new incarnation of the same state: nothing to tell */
    if (!name[0])
        snprintf(name, sizeof name, "%016" PRIx64, e->id);
    atomic_fetch_add_explicit(&n->st_swim_changes, 1, memory_order_relaxed);
    if (e->prev_state == SWIM_NONE && e->state == SWIM_ALIVE)
        return; /* a member appearing alive is the normal start */
    struct obs_event_attrs at = {.set = OBS_ATTR_COUNT, .count = e->incarnation};
    obs_attrs_set_node(&at, name);
    obs_attrs_set_role(&at, swim_state_name(e->state));
    obs_event_emit_attrs(obs_events_default(), OBS_EV_MEMBERSHIP, OBS_NO_SHARD, &at,
                         "member %s is %s (was %s; incarnation %" PRIu64 ")", name,
                         swim_state_name(e->state), swim_state_name(e->prev_state),
                         e->incarnation);
    NK_INFO(MODULE, "SWIM: member %s is %s (was %s)", name, swim_state_name(e->state),
            swim_state_name(e->prev_state));
}

static void flush_output(struct node_liveness *lv)
{
    struct swim_output out;
    swim_output(lv->sw, &out);
    char dest[SWIM_MAX_ADDR + 1];
    for (size_t i = 0; i < out.n_packets; i++) {
        const struct swim_packet *p = &out.packets[i];
        dest_of(lv->n, p->to, p->addr, dest, sizeof dest);
        const struct lv_addr *a = lookup(lv, dest);
        if (!a) {
            atomic_fetch_add_explicit(&lv->n->st_swim_send_failed, 1, memory_order_relaxed);
            continue;
        }
        if (sendto(lv->fd, p->data, p->len, MSG_DONTWAIT, (const struct sockaddr *)&a->sa,
                   a->len) < 0)
            atomic_fetch_add_explicit(&lv->n->st_swim_send_failed, 1, memory_order_relaxed);
    }
    for (size_t i = 0; i < out.n_events; i++)
        note_event(lv, &out.events[i]);
    if (out.events_overflowed) {
        /* some events were dropped: take every member's state as it is */
        pthread_mutex_lock(&lv->n->vmu);
        for (uint32_t k = 0; k < lv->n->n_members; k++) {
            struct swim_member_info mi;
            if (lv->n->members[k].id != lv->n->self_id &&
                swim_member_get(lv->sw, lv->n->members[k].id, &mi))
                lv->n->members[k].swim_state = mi.state;
        }
        lv->n->view_local++;
        pthread_mutex_unlock(&lv->n->vmu);
    }
    swim_output_clear(lv->sw);
}

static void publish_stats(struct node_liveness *lv)
{
    struct swim_stats st;
    swim_stats(lv->sw, &st);
    struct node *n = lv->n;
    pthread_mutex_lock(&n->vmu);
    n->swim_stats = st;
    n->swim_incarnation = swim_incarnation(lv->sw);
    pthread_mutex_unlock(&n->vmu);
}

static void *liveness_main(void *arg)
{
    struct node_liveness *lv = arg;
    struct pollfd pf[2] = {{.fd = lv->fd, .events = POLLIN}, {.fd = lv->wake_fd, .events = POLLIN}};
    uint64_t last_pub = 0;
    while (!atomic_load(&lv->stop)) {
        uint64_t now = lv_now(lv);
        uint64_t dl = swim_next_deadline(lv->sw);
        int wait = dl <= now ? 0 : (int)NK_MIN(dl - now, (uint64_t)LV_MAX_WAIT_MS);
        int r = poll(pf, 2, wait);
        if (r < 0 && errno != EINTR)
            break;
        now = lv_now(lv);
        if (r > 0 && (pf[0].revents & POLLIN)) {
            /* drain what arrived, bounded per wake so ticks are not starved */
            for (int k = 0; k < 256; k++) {
                ssize_t got = recv(lv->fd, lv->rx, LV_MAX_DATAGRAM, MSG_DONTWAIT);
                if (got < 0)
                    break;
                nk_status s = swim_step(lv->sw, now, lv->rx, (size_t)got);
                if (!nk_ok(s)) {
                    atomic_fetch_add_explicit(&lv->n->st_swim_rejected, 1,
                                              memory_order_relaxed);
                    nk_status_free(&s);
                }
            }
        }
        if (atomic_load_explicit(&lv->n->leave_wanted, memory_order_acquire) && !lv->left) {
            swim_leave(lv->sw, now); /* a drained node: gossip `left` */
            lv->left = true;
        }
        swim_tick(lv->sw, now);
        flush_output(lv);
        if (now - last_pub >= 200) {
            publish_stats(lv);
            last_pub = now;
        }
    }
    publish_stats(lv);
    return NULL;
}

nk_status node_liveness_start(struct node *n)
{
    if (!n->clustered || !n->tp || n->lv)
        return NK_OK;
    const char *self_addr = transport_listen_addr(n->tp);
    struct node_liveness *lv = nk_calloc(1, sizeof *lv);
    lv->n = n;
    lv->fd = lv->wake_fd = -1;
    lv->t0_ns = nk_mono_ns();
    lv->rx = nk_malloc(LV_MAX_DATAGRAM);
    struct sockaddr_storage sa;
    socklen_t slen;
    nk_status s = NK_OK;
    if (!resolve(self_addr, &sa, &slen)) {
        s = nk_status_make(NK_INVALID_ARGUMENT, "SWIM: cannot resolve the peer address %s",
                           self_addr);
        goto fail;
    }
    lv->fd = socket(sa.ss_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (lv->fd < 0 || bind(lv->fd, (struct sockaddr *)&sa, slen) != 0) {
        s = nk_status_errno(errno, "SWIM: binding UDP %s (the peer port)", self_addr);
        goto fail;
    }
    lv->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (lv->wake_fd < 0) {
        s = nk_status_errno(errno, "SWIM: eventfd");
        goto fail;
    }
    struct swim_config cfg = {
        .id = n->self_id,
        .addr = self_addr,
        .cluster = n->cluster_id,
        .seed = n->self_id ^ nk_mono_ns(),
        /* a restarted node takes a higher incarnation than in its last life
         * (its wall clock in seconds), so that it refutes its own death at once */
        .incarnation = nk_wall_ms() / 1000,
        .probe_interval_ms = n->opt.swim_probe_interval_ms,
        .probe_timeout_ms = n->opt.swim_probe_timeout_ms,
        .suspicion_mult = n->opt.swim_suspicion_mult,
        .suspicion_max_mult = n->opt.swim_suspicion_max_mult,
        .disable_lifeguard = n->opt.swim_disable_lifeguard,
        .max_members = 64,
    };
    s = swim_new(&cfg, 0, &lv->sw);
    if (!nk_ok(s))
        goto fail;
    pthread_mutex_lock(&n->vmu);
    for (uint32_t i = 0; i < n->n_members; i++) {
        const struct member *m = &n->members[i];
        if (m->id == n->self_id || !m->peer_addr[0] || m->swim_state == SWIM_LEFT)
            continue;
        nk_status as = swim_add_member(lv->sw, m->id, m->peer_addr, 0);
        if (!nk_ok(as)) {
            NK_WARN(MODULE, "SWIM: member %s: %s", m->name, nk_status_msg(as));
            nk_status_free(&as);
        }
    }
    lv->bound_ms = (uint32_t)swim_detection_bound_ms(&cfg, n->n_members);
    pthread_mutex_unlock(&n->vmu);
    flush_output(lv); /* the members just added, as alive */
    if (pthread_create(&lv->thread, NULL, liveness_main, lv) != 0) {
        s = nk_status_errno(errno, "start the SWIM thread");
        goto fail;
    }
    pthread_mutex_lock(&n->vmu);
    n->lv = lv; /* node_get_stats reads it under vmu */
    pthread_mutex_unlock(&n->vmu);
    lv->started = true;
    NK_INFO(MODULE, "SWIM on UDP %s: probe every %u ms, %u members, failure detected within %u ms",
            self_addr, cfg.probe_interval_ms ? cfg.probe_interval_ms : 1000, n->n_members,
            lv->bound_ms);
    return NK_OK;
fail:
    if (lv->sw)
        swim_free(lv->sw);
    if (lv->fd >= 0)
        close(lv->fd);
    if (lv->wake_fd >= 0)
        close(lv->wake_fd);
    free(lv->rx);
    free(lv);
    return s;
}

void node_liveness_stop(struct node *n)
{
    struct node_liveness *lv = n->lv;
    if (!lv)
        return;
    atomic_store(&lv->stop, true);
    uint64_t one = 1;
    ssize_t w = write(lv->wake_fd, &one, sizeof one);
    (void)w;
    if (lv->started)
        pthread_join(lv->thread, NULL);
    pthread_mutex_lock(&n->vmu);
    n->lv = NULL;
    pthread_mutex_unlock(&n->vmu);
    swim_free(lv->sw);
    close(lv->fd);
    close(lv->wake_fd);
    free(lv->rx);
    free(lv);
}

uint32_t node_liveness_bound_ms(const struct node *n)
{
    return n->lv ? n->lv->bound_ms : 0;
}
