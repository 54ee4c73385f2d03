/*
 * transport.c: the public API, the peer table, and the transport thread: one
 * epoll loop over the listening socket, an eventfd for wake-ups, and every
 * peer connection; timers (dial backoff, handshake deadlines, keepalive,
 * idle detection) are checked after each batch of events, and the epoll
 * timeout is the nearest of them. Connection I/O is in conn.c.
 */
#define _GNU_SOURCE /* accept4 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "transport/transport_int.h"

#ifndef TCP_NOTSENT_LOWAT
#define TCP_NOTSENT_LOWAT 25
#endif

static void fill_defaults(struct transport_options *o)
{
#define DEF(f, v)                                                                                  \
    if (!o->f)                                                                                     \
    o->f = (v)
    DEF(raft_queue_frames, 4096);
    DEF(raft_queue_bytes, 64ull << 20);
    DEF(bulk_queue_frames, 64);
    DEF(bulk_queue_bytes, 64ull << 20);
    DEF(max_frame_bytes, 16u << 20);
    DEF(bulk_fragment_bytes, 64u << 10);
    DEF(bulk_window_bytes, 1u << 20);
    DEF(max_peers, 256);
    DEF(max_pending_conns, 64);
    DEF(keepalive_ms, 500);
    DEF(idle_timeout_ms, 3000);
    DEF(handshake_timeout_ms, 3000);
    DEF(backoff_min_ms, 50);
    DEF(backoff_max_ms, 1000);
    DEF(notsent_lowat, 128u << 10);
#undef DEF
    if (o->bulk_fragment_bytes > o->max_frame_bytes)
        o->bulk_fragment_bytes = o->max_frame_bytes;
    if (o->backoff_max_ms < o->backoff_min_ms)
        o->backoff_max_ms = o->backoff_min_ms;
}

/* ------------------------------------------------------------- addresses */

/* Splits "host:port" / "[v6]:port" into host and port. */
static bool split_addr(const char *addr, char *host, size_t hn, char *port, size_t pn)
{
    if (!addr || !*addr || strlen(addr) >= TRANSPORT_ADDR_MAX)
        return false;
    const char *colon;
    if (addr[0] == '[') {
        const char *end = strchr(addr, ']');
        if (!end || end[1] != ':')
            return false;
        if ((size_t)(end - addr - 1) >= hn)
            return false;
        memcpy(host, addr + 1, (size_t)(end - addr - 1));
        host[end - addr - 1] = 0;
        colon = end + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon || (size_t)(colon - addr) >= hn)
            return false;
        memcpy(host, addr, (size_t)(colon - addr));
        host[colon - addr] = 0;
    }
    const char *ps = colon + 1;
    if (!*ps || strlen(ps) >= pn)
        return false;
    for (const char *q = ps; *q; q++)
        if (*q < '0' || *q > '9')
            return false;
    if (atol(ps) > 65535)
        return false;
    strcpy(port, ps);
    return true;
}

static nk_status resolve(const char *addr, bool passive, struct addrinfo **out)
{
    char host[TRANSPORT_ADDR_MAX], port[16];
    if (!split_addr(addr, host, sizeof host, port, sizeof port))
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "transport: address \"%s\" is not host:port or [v6]:port",
                              addr ? addr : "(null)");
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0)};
    int rc = getaddrinfo(host[0] ? host : NULL, port, &hints, out);
    if (rc != 0)
        return nk_status_make(NK_INVALID_ARGUMENT, "transport: cannot resolve \"%s\": %s", addr,
                              gai_strerror(rc));
    return NK_OK;
}

static void sockaddr_str(const struct sockaddr *sa, char *buf, size_t n)
{
    char h[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s->sin_addr, h, sizeof h);
        port = ntohs(s->sin_port);
        snprintf(buf, n, "%s:%d", h, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s->sin6_addr, h, sizeof h);
        port = ntohs(s->sin6_port);
        snprintf(buf, n, "[%s]:%d", h, port);
    } else {
        snprintf(buf, n, "?");
    }
}

static void tune_socket(struct transport *t, int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int lowat = (int)t->o.notsent_lowat;
    setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof lowat);
}

/* ------------------------------------------------------------------ helpers */

struct tp_peer *tp_find_peer(struct transport *t, uint64_t id)
{
    for (size_t i = 0; i < t->npeers; i++)
        if (t->peers[i]->id == id)
            return t->peers[i];
    return NULL;
}

void tp_wake(struct transport *t)
{
    uint64_t one = 1;
    ssize_t w = write(t->wake_fd, &one, sizeof one);
    (void)w;
}

void tp_event(struct transport *t, uint64_t peer, enum transport_peer_event ev, const char *reason)
{
    if (t->closing)
        return;
    if (t->nevs == t->capevs) {
        t->capevs = t->capevs ? 2 * t->capevs : 16;
        t->evs = nk_realloc(t->evs, t->capevs * sizeof *t->evs);
    }
    struct tp_event *e = &t->evs[t->nevs++];
    e->peer = peer;
    e->ev = ev;
    snprintf(e->reason, sizeof e->reason, "%s", reason ? reason : "");
}

void tp_fire_events(struct transport *t)
{
    pthread_mutex_lock(&t->mu);
    struct tp_event *evs = t->evs;
    size_t n = t->nevs;
    bool closing = t->closing;
    t->evs = NULL;
    t->nevs = t->capevs = 0;
    pthread_mutex_unlock(&t->mu);
    for (size_t i = 0; i < n && !closing; i++)
        if (t->o.on_peer)
            t->o.on_peer(t->o.ctx, evs[i].peer, evs[i].ev,
                         evs[i].ev == TRANSPORT_PEER_UP ? NULL : evs[i].reason);
    free(evs);
}

void tp_peer_error(struct transport *t, struct tp_peer *p, enum nk_log_level lvl, const char *fmt,
                   ...)
{
    char msg[TRANSPORT_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    uint64_t now = nk_mono_ms();
    /* a peer that stays down would log every backoff: say it once a minute */
    bool same = strcmp(msg, p->st.last_error) == 0;
    if (!same || now - p->last_log_ms >= 60000) {
        nk_log(lvl, TP_MOD, "%s", msg);
        p->last_log_ms = now;
    }
    memcpy(p->st.last_error, msg, sizeof msg);
}

/* A peer with a lower id dials us too, and its connection would win the
 * tie-break: give it a head start so that a pair coming up together makes one
 * connection, not two and a replaced session. Our own dial still follows
 * (a one-way failure, a proxy that only works in our direction). */
static uint64_t dial_grace(const struct transport *t, uint64_t peer)
{
    return peer < t->o.self_id ? 4ull * t->o.backoff_min_ms : 0;
}

void tp_schedule_dial(struct transport *t, struct tp_peer *p, bool failed)
{
    if (failed)
        p->backoff_ms = p->backoff_ms ? NK_MIN(2 * p->backoff_ms, t->o.backoff_max_ms)
                                      : t->o.backoff_min_ms;
    uint32_t base = failed ? p->backoff_ms : t->o.backoff_min_ms;
    /* equal jitter: half fixed, half random, so redials of many nodes spread */
    uint64_t delay = base / 2 + nk_rng_uniform(&t->rng, base / 2 + 1);
    p->next_dial_ms = nk_mono_ms() + delay + dial_grace(t, p->id);
}

/* ------------------------------------------------------------------ dialing */

static void dial(struct transport *t, uint64_t id, const char *addr)
{
    struct addrinfo *ai = NULL;
    nk_status s = resolve(addr, false, &ai);
    int fd = -1;
    int err = 0;
    char remote[64];
    snprintf(remote, sizeof remote, "%s", addr);
    if (nk_ok(s)) {
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            err = errno;
        } else {
            tune_socket(t, fd);
            if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
                err = errno;
                close(fd);
                fd = -1;
            }
        }
        freeaddrinfo(ai);
    }
    pthread_mutex_lock(&t->mu);
    struct tp_peer *p = tp_find_peer(t, id);
    if (!p || p->active || p->dialing) { /* removed, or a session came up meanwhile */
        if (fd >= 0)
            close(fd);
        pthread_mutex_unlock(&t->mu);
        nk_status_free(&s);
        return;
    }
    p->st.dials++;
    if (fd < 0) {
        tp_peer_error(t, p, NK_LOG_INFO, "dial node %llu at %s: %s", (unsigned long long)id, addr,
                      nk_ok(s) ? strerror(err) : nk_status_msg(s));
        tp_schedule_dial(t, p, true);
        pthread_mutex_unlock(&t->mu);
        nk_status_free(&s);
        return;
    }
    struct tp_conn *c = tp_conn_new(t, fd, true, remote);
    c->peer = p;
    p->dialing = c;
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
        tp_conn_close(t, c, "epoll_ctl(ADD) failed", false);
    pthread_mutex_unlock(&t->mu);
}

static void do_accept(struct transport *t)
{
    for (int k = 0; k < 64; k++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(t->listen_fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                NK_WARN(TP_MOD, "accept on %s: %s", t->listen_addr, strerror(errno));
            return;
        }
        char remote[64];
        sockaddr_str((struct sockaddr *)&ss, remote, sizeof remote);
        pthread_mutex_lock(&t->mu);
        if (t->pending >= t->o.max_pending_conns) {
            t->st.rejected_pending++;
            pthread_mutex_unlock(&t->mu);
            NK_WARN(TP_MOD, "refused connection from %s: %u connections already await a HELLO",
                    remote, t->o.max_pending_conns);
            close(fd);
            continue;
        }
        t->st.accepted++;
        tune_socket(t, fd);
        struct tp_conn *c = tp_conn_new(t, fd, false, remote);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
            tp_conn_close(t, c, "epoll_ctl(ADD) failed", false);
        else
            tp_conn_queue_hello(t, c);
        pthread_mutex_unlock(&t->mu);
    }
}

/* ------------------------------------------------------------------- timers */

struct dial_req {
    uint64_t id;
    char addr[TRANSPORT_ADDR_MAX];
};

/* Runs with t->mu held. Returns the ms until the next deadline; fills the
 * dials due (done by the caller without the lock). */
static int run_timers(struct transport *t, struct dial_req **dials, size_t *ndials)
{
    uint64_t now = nk_mono_ms();
    uint64_t next = now + 1000;
    char why[TRANSPORT_ERROR_MAX];
    for (struct tp_conn *c = t->conns, *cn; c; c = cn) {
        cn = c->next;
        if (c->broken) {
            tp_conn_close(t, c, c->error, false);
            continue;
        }
        if (c->state == TP_CONNECTING || c->state == TP_HANDSHAKE) {
            if (now >= c->deadline_ms) {
                snprintf(why, sizeof why, "%s with %s timed out after %u ms",
                         c->state == TP_CONNECTING ? "connect" : "handshake", c->remote,
                         t->o.handshake_timeout_ms);
                tp_conn_close(t, c, why, c->state == TP_HANDSHAKE);
                continue;
            }
            next = NK_MIN(next, c->deadline_ms);
            continue;
        }
        if (c->state != TP_ACTIVE)
            continue;
        struct tp_peer *p = c->peer;
        if (now - c->last_recv_ms >= t->o.idle_timeout_ms) {
            snprintf(why, sizeof why, "nothing received from node %llu for %llu ms",
                     (unsigned long long)p->id, (unsigned long long)(now - c->last_recv_ms));
            tp_conn_close(t, c, why, true);
            continue;
        }
        if (tp_peer_has_output(p) && now - c->last_progress_ms >= t->o.idle_timeout_ms) {
            snprintf(why, sizeof why, "node %llu accepted no bytes for %llu ms",
                     (unsigned long long)p->id, (unsigned long long)(now - c->last_progress_ms));
            tp_conn_close(t, c, why, false);
            continue;
        }
        if (!tp_peer_has_output(p) && now - c->last_send_ms >= t->o.keepalive_ms)
            tp_enqueue_internal(t, p, TRANSPORT_FRAME_PING, NULL, 0);
        next = NK_MIN(next, c->last_recv_ms + t->o.idle_timeout_ms);
        if (tp_peer_has_output(p))
            next = NK_MIN(next, c->last_progress_ms + t->o.idle_timeout_ms);
        else
            next = NK_MIN(next, c->last_send_ms + t->o.keepalive_ms);
    }
    for (size_t i = 0; i < t->npeers; i++) {
        struct tp_peer *p = t->peers[i];
        if (p->active || p->dialing)
            continue;
        if (now >= p->next_dial_ms) {
            *dials = nk_realloc(*dials, (*ndials + 1) * sizeof **dials);
            (*dials)[*ndials].id = p->id;
            memcpy((*dials)[*ndials].addr, p->addr, TRANSPORT_ADDR_MAX);
            (*ndials)++;
        } else {
            next = NK_MIN(next, p->next_dial_ms);
        }
    }
    if (*ndials)
        return 0;
    now = nk_mono_ms();
    return next > now ? (int)(next - now) : 0;
}

static void free_peer(struct tp_peer *p)
{
    for (int k = 0; k < TRANSPORT_NCLASSES; k++)
        tp_queue_discard(p, k, false);
    free(p);
}

static void bury_peers(struct transport *t)
{
    while (t->grave) {
        struct tp_peer *p = t->grave;
        t->grave = p->grave_next;
        for (struct tp_conn *c = t->conns, *cn; c; c = cn) {
            cn = c->next;
            if (c->peer == p)
                tp_conn_close(t, c, "peer removed", true);
        }
        NK_ASSERT(!p->active && !p->dialing);
        free_peer(p);
    }
}

static void free_dead(struct transport *t)
{
    while (t->dead) {
        struct tp_conn *c = t->dead;
        t->dead = c->next;
        transport_decoder_free(&c->dec);
        free(c);
    }
}

static void *thread_main(void *arg)
{
    struct transport *t = arg;
    struct epoll_event evs[64];
    int timeout = 0;
    while (!atomic_load(&t->stop)) {
        int n = epoll_wait(t->epfd, evs, NK_ARRAY_LEN(evs), timeout);
        if (n < 0 && errno != EINTR)
            nk_panic("transport: epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++) {
            int tag = *(int *)evs[i].data.ptr;
            if (tag == TP_TAG_LISTEN) {
                do_accept(t);
            } else if (tag == TP_TAG_WAKE) {
                uint64_t v;
                ssize_t r = read(t->wake_fd, &v, sizeof v);
                (void)r;
            } else {
                struct tp_conn *c = evs[i].data.ptr;
                uint32_t e = evs[i].events;
                if (c->state == TP_DEAD)
                    continue;
                if (c->state == TP_CONNECTING) {
                    int err = 0;
                    socklen_t el = sizeof err;
                    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                    pthread_mutex_lock(&t->mu);
                    if (err || (e & (EPOLLERR | EPOLLHUP)))
                        tp_conn_close(t, c, strerror(err ? err : ECONNREFUSED), false);
                    else
                        tp_conn_connected(t, c);
                    pthread_mutex_unlock(&t->mu);
                    continue;
                }
                if (e & EPOLLOUT) {
                    pthread_mutex_lock(&t->mu);
                    if (c->state == TP_ACTIVE)
                        tp_peer_flush(t, c->peer);
                    else if (c->state == TP_HANDSHAKE)
                        tp_conn_write_ctl(t, c);
                    pthread_mutex_unlock(&t->mu);
                }
                if ((e & (EPOLLIN | EPOLLERR | EPOLLHUP)) && c->state != TP_DEAD)
                    tp_conn_readable(t, c);
            }
        }
        struct dial_req *dials = NULL;
        size_t ndials = 0;
        pthread_mutex_lock(&t->mu);
        free_dead(t);
        bury_peers(t);
        timeout = run_timers(t, &dials, &ndials);
        pthread_mutex_unlock(&t->mu);
        for (size_t i = 0; i < ndials; i++)
            dial(t, dials[i].id, dials[i].addr);
        free(dials);
        tp_fire_events(t);
    }
    /* shutdown: tell every connected peer, close everything */
    pthread_mutex_lock(&t->mu);
    t->closing = true;
    while (t->conns)
        tp_conn_close(t, t->conns, "node shutting down", true);
    free_dead(t);
    bury_peers(t);
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

/* ---------------------------------------------------------------------- API */

nk_status transport_open(const struct transport_options *opts, struct transport **out)
{
    *out = NULL;
    if (opts->self_id == 0)
        return nk_status_make(NK_INVALID_ARGUMENT, "transport: self_id must be non-zero");
    if (!opts->on_frame)
        return nk_status_make(NK_INVALID_ARGUMENT, "transport: on_frame is required");
    struct transport *t = nk_calloc(1, sizeof *t);
    t->o = *opts;
    fill_defaults(&t->o);
    snprintf(t->self_name, sizeof t->self_name, "%s", opts->self_name ? opts->self_name : "");
    t->o.self_name = t->self_name;
    t->epfd = t->listen_fd = t->wake_fd = -1;
    t->listen_tag = TP_TAG_LISTEN;
    t->wake_tag = TP_TAG_WAKE;
    pthread_mutex_init(&t->mu, NULL);
    uint64_t seed = opts->seed ? opts->seed : (nk_mono_ns() ^ ((uint64_t)getpid() << 32));
    nk_rng_seed(&t->rng, seed ^ opts->self_id);
    t->incarnation = nk_rng_next(&t->rng) ^ nk_wall_ms();
    t->peers = nk_calloc(t->o.max_peers, sizeof *t->peers);
    t->rbuf = nk_malloc(256u << 10);

    struct addrinfo *ai = NULL;
    nk_status s = resolve(opts->listen_addr, true, &ai);
    if (!nk_ok(s))
        goto fail;
    t->listen_fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (t->listen_fd < 0 ||
        setsockopt(t->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(t->listen_fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(t->listen_fd, 128) != 0) {
        s = nk_status_errno(errno, "transport: listen on %s", opts->listen_addr);
        freeaddrinfo(ai);
        goto fail;
    }
    freeaddrinfo(ai);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(t->listen_fd, (struct sockaddr *)&ss, &sl);
    sockaddr_str((struct sockaddr *)&ss, t->listen_addr, sizeof t->listen_addr);

    t->epfd = epoll_create1(EPOLL_CLOEXEC);
    t->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (t->epfd < 0 || t->wake_fd < 0) {
        s = nk_status_errno(errno, "transport: epoll/eventfd");
        goto fail;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &t->listen_tag};
    struct epoll_event ev2 = {.events = EPOLLIN, .data.ptr = &t->wake_tag};
    if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->listen_fd, &ev) != 0 ||
        epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->wake_fd, &ev2) != 0) {
        s = nk_status_errno(errno, "transport: epoll_ctl");
        goto fail;
    }
    int rc = pthread_create(&t->thread, NULL, thread_main, t);
    if (rc != 0) {
        s = nk_status_errno(rc, "transport: pthread_create");
        goto fail;
    }
    NK_INFO(TP_MOD, "node %llu (%s) listening for peers on %s (cluster id %llu, %u shards)",
            (unsigned long long)t->o.self_id, t->self_name, t->listen_addr,
            (unsigned long long)t->o.cluster_id, t->o.total_shards);
    *out = t;
    return NK_OK;
fail:
    if (t->listen_fd >= 0)
        close(t->listen_fd);
    if (t->epfd >= 0)
        close(t->epfd);
    if (t->wake_fd >= 0)
        close(t->wake_fd);
    pthread_mutex_destroy(&t->mu);
    free(t->peers);
    free(t->rbuf);
    free(t);
    return s;
}

void transport_close(struct transport *t)
{
    if (!t)
        return;
    atomic_store(&t->stop, true);
    tp_wake(t);
    pthread_join(t->thread, NULL);
    for (size_t i = 0; i < t->npeers; i++)
        free_peer(t->peers[i]);
    free(t->peers);
    free(t->evs);
    close(t->listen_fd);
    close(t->epfd);
    close(t->wake_fd);
    pthread_mutex_destroy(&t->mu);
    free(t->rbuf);
    free(t);
}

const char *transport_listen_addr(const struct transport *t)
{
    return t->listen_addr;
}

static nk_status check_addr(const char *addr)
{
    char host[TRANSPORT_ADDR_MAX], port[16];
    if (!split_addr(addr, host, sizeof host, port, sizeof port) || !host[0])
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "transport: peer address \"%s\" is not host:port or [v6]:port",
                              addr ? addr : "(null)");
    return NK_OK;
}

nk_status transport_add_peer(struct transport *t, uint64_t id, const char *addr)
{
    if (id == 0 || id == t->o.self_id)
        return nk_status_make(NK_INVALID_ARGUMENT, "transport: cannot add peer id %llu%s",
                              (unsigned long long)id, id ? " (this node's own id)" : "");
    NK_TRY(check_addr(addr));
    pthread_mutex_lock(&t->mu);
    nk_status s = NK_OK;
    if (tp_find_peer(t, id)) {
        s = nk_status_make(NK_ALREADY_EXISTS, "transport: peer %llu already added",
                           (unsigned long long)id);
    } else if (t->npeers >= t->o.max_peers) {
        s = nk_status_make(NK_RESOURCE_EXHAUSTED, "transport: max_peers (%u) reached",
                           t->o.max_peers);
    } else {
        struct tp_peer *p = nk_calloc(1, sizeof *p);
        p->id = id;
        p->st.id = id;
        snprintf(p->addr, sizeof p->addr, "%s", addr);
        p->next_dial_ms = nk_mono_ms() + dial_grace(t, id);
        t->peers[t->npeers++] = p;
    }
    pthread_mutex_unlock(&t->mu);
    if (nk_ok(s))
        tp_wake(t);
    return s;
}

nk_status transport_set_peer_addr(struct transport *t, uint64_t id, const char *addr)
{
    NK_TRY(check_addr(addr));
    pthread_mutex_lock(&t->mu);
    struct tp_peer *p = tp_find_peer(t, id);
    if (p)
        snprintf(p->addr, sizeof p->addr, "%s", addr);
    pthread_mutex_unlock(&t->mu);
    if (!p)
        return nk_status_make(NK_NOT_FOUND, "transport: unknown peer %llu",
                              (unsigned long long)id);
    return NK_OK;
}

void transport_set_cluster_id(struct transport *t, uint64_t cluster_id)
{
    pthread_mutex_lock(&t->mu);
    t->o.cluster_id = cluster_id;
    pthread_mutex_unlock(&t->mu);
}

nk_status transport_remove_peer(struct transport *t, uint64_t id)
{
    pthread_mutex_lock(&t->mu);
    size_t i = 0;
    while (i < t->npeers && t->peers[i]->id != id)
        i++;
    if (i == t->npeers) {
        pthread_mutex_unlock(&t->mu);
        return nk_status_make(NK_NOT_FOUND, "transport: unknown peer %llu",
                              (unsigned long long)id);
    }
    struct tp_peer *p = t->peers[i];
    memmove(&t->peers[i], &t->peers[i + 1], (t->npeers - i - 1) * sizeof *t->peers);
    t->npeers--;
    p->removed = true;
    p->grave_next = t->grave;
    t->grave = p;
    pthread_mutex_unlock(&t->mu);
    tp_wake(t);
    return NK_OK;
}

bool transport_peer_up(struct transport *t, uint64_t id)
{
    pthread_mutex_lock(&t->mu);
    struct tp_peer *p = tp_find_peer(t, id);
    bool up = p && p->active;
    pthread_mutex_unlock(&t->mu);
    return up;
}

/* Whether a payload of len bytes may be queued for `to` now (t->mu held);
 * counts the refusal. */
static nk_status admit(struct transport *t, uint64_t to, uint8_t cls, size_t len)
{
    struct tp_peer *p = tp_find_peer(t, to);
    if (!p)
        return nk_status_make(NK_NOT_FOUND, "transport: unknown peer %llu",
                              (unsigned long long)to);
    if (!p->active) {
        p->st.dropped_down[cls]++;
        return nk_status_make(NK_UNAVAILABLE, "transport: node %llu is not connected",
                              (unsigned long long)to);
    }
    struct tp_queue *q = &p->q[cls];
    uint32_t maxf = cls == TRANSPORT_CLASS_RAFT ? t->o.raft_queue_frames : t->o.bulk_queue_frames;
    uint64_t maxb = cls == TRANSPORT_CLASS_RAFT ? t->o.raft_queue_bytes : t->o.bulk_queue_bytes;
    if (q->frames + 1 > maxf || q->bytes + len > maxb) {
        p->st.dropped_full[cls]++;
        return nk_status_make(NK_RESOURCE_EXHAUSTED,
                              "transport: %s queue to node %llu is full (%u frames, %llu bytes; "
                              "limits %u frames, %llu bytes)",
                              cls == TRANSPORT_CLASS_RAFT ? "raft" : "bulk",
                              (unsigned long long)to, q->frames, (unsigned long long)q->bytes,
                              maxf, (unsigned long long)maxb);
    }
    return NK_OK;
}

nk_status transport_sendv(struct transport *t, uint64_t to, uint8_t cls,
                          const struct nk_slice *parts, size_t nparts)
{
    if (cls >= TRANSPORT_NCLASSES)
        return nk_status_make(NK_INVALID_ARGUMENT, "transport: unknown traffic class %u", cls);
    size_t len = 0;
    for (size_t i = 0; i < nparts; i++)
        len += parts[i].len;
    if (len > t->o.max_frame_bytes)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "transport: payload of %zu bytes exceeds max_frame_bytes %u", len,
                              t->o.max_frame_bytes);
    /* refuse cheaply first (a caller retrying on a full queue must not pay
     * for a copy and a checksum each time), then copy and checksum without
     * the lock, then enqueue (checking again: things may have changed) */
    pthread_mutex_lock(&t->mu);
    nk_status s = admit(t, to, cls, len);
    pthread_mutex_unlock(&t->mu);
    if (!nk_ok(s))
        return s;
    struct tp_item *it = nk_malloc(sizeof *it + TRANSPORT_FRAME_HEADER + len);
    memset(it, 0, sizeof *it);
    it->type = cls == TRANSPORT_CLASS_RAFT ? TRANSPORT_FRAME_RAFT : TRANSPORT_FRAME_BULK;
    it->len = (uint32_t)len;
    uint8_t *dst = it->buf + TRANSPORT_FRAME_HEADER;
    for (size_t i = 0; i < nparts; i++) {
        if (parts[i].len)
            memcpy(dst, parts[i].data, parts[i].len);
        dst += parts[i].len;
    }
    if (cls == TRANSPORT_CLASS_RAFT)
        transport_frame_header(it->buf, TRANSPORT_FRAME_RAFT, 0, it->buf + TRANSPORT_FRAME_HEADER,
                               len);

    pthread_mutex_lock(&t->mu);
    s = admit(t, to, cls, len);
    if (nk_ok(s)) {
        struct tp_peer *p = tp_find_peer(t, to);
        struct tp_queue *q = &p->q[cls];
        if (q->tail)
            q->tail->next = it;
        else
            q->head = it;
        q->tail = it;
        q->frames++;
        q->bytes += len;
        it = NULL;
        /* an idle connection is written at once from this thread; a busy
         * one is drained by the transport thread on EPOLLOUT */
        if (!p->active->want_out)
            tp_peer_flush(t, p);
    }
    pthread_mutex_unlock(&t->mu);
    free(it);
    return s;
}

nk_status transport_send(struct transport *t, uint64_t to, uint8_t cls, const void *data,
                         size_t len)
{
    struct nk_slice part = nk_slice_make(data, len);
    return transport_sendv(t, to, cls, &part, 1);
}

void transport_stats(struct transport *t, struct transport_stats *totals,
                     struct transport_peer_stats *peers, size_t cap, size_t *n)
{
    pthread_mutex_lock(&t->mu);
    if (totals) {
        *totals = t->st;
        totals->pending_conns = t->pending;
        totals->peers = (uint32_t)t->npeers;
    }
    for (size_t i = 0; peers && i < t->npeers && i < cap; i++) {
        struct tp_peer *p = t->peers[i];
        peers[i] = p->st;
        memcpy(peers[i].addr, p->addr, sizeof p->addr);
        peers[i].connected = p->active != NULL;
        peers[i].dialed_by = p->active ? p->active->dialer : 0;
        for (int k = 0; k < TRANSPORT_NCLASSES; k++) {
            peers[i].queued_frames[k] = p->q[k].frames;
            peers[i].queued_bytes[k] = p->q[k].bytes;
        }
    }
    if (n)
        *n = t->npeers;
    pthread_mutex_unlock(&t->mu);
}
