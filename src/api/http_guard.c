/*
 * http_guard.c: a deadline on receiving each HTTP request.
 *
 * libmicrohttpd's connection timeout is an idle timeout: it restarts on
 * every byte, so a client sending one header line every few seconds holds
 * its connection (and, one thread per connection, a thread) forever, and a
 * few dozen such clients fill every slot. The guard measures the time from
 * the start of a request's reception (the connection's accept, or the end
 * of the previous response on a kept-alive connection) until the request,
 * headers and body, has fully arrived. A watchdog thread cuts connections
 * that pass the deadline with shutdown(2); libmicrohttpd then sees the end
 * of the stream and closes them itself. Time spent in the handler (waiting
 * for the node) is not counted.
 *
 * Safety of shutdown(fd) from another thread: libmicrohttpd calls the
 * NOTIFY_CLOSED callback before it closes a connection's socket, and the
 * guard removes the connection under the same mutex it holds while cutting,
 * so the fd it cuts is always still the connection's own.
 */
#include <inttypes.h>
#include <microhttpd.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "api/api_internal.h"

#define MODULE "http"
#define TICK_MS 200

struct guard_conn {
    struct guard_conn *prev, *next;
    int fd;
    _Atomic uint64_t since_ms; /* reception started (nk_mono_ms) */
    _Atomic bool receiving;
    bool cut;
};

struct http_guard {
    uint32_t deadline_ms;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct guard_conn *conns;
    bool stop;
    pthread_t thread;
    uint64_t n_cut, n_cut_logged;
    uint64_t last_log_ms;
};

static void *watchdog(void *arg)
{
    struct http_guard *g = arg;
    pthread_mutex_lock(&g->mu);
    while (!g->stop) {
        uint64_t now = nk_mono_ms();
        for (struct guard_conn *c = g->conns; c; c = c->next) {
            if (c->cut || !atomic_load(&c->receiving))
                continue;
            if (now - atomic_load(&c->since_ms) < g->deadline_ms)
                continue;
            shutdown(c->fd, SHUT_RDWR);
            c->cut = true;
            g->n_cut++;
        }
        if (g->n_cut != g->n_cut_logged && now - g->last_log_ms >= 10000) {
            NK_WARN(MODULE,
                    "closed %" PRIu64 " HTTP connection(s) that did not send a whole request "
                    "within %u ms",
                    g->n_cut - g->n_cut_logged, g->deadline_ms);
            g->n_cut_logged = g->n_cut;
            g->last_log_ms = now;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += TICK_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&g->cv, &g->mu, &ts);
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

nk_status http_guard_start(uint32_t deadline_ms, struct http_guard **out)
{
    struct http_guard *g = nk_calloc(1, sizeof(*g));
    g->deadline_ms = deadline_ms;
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    if (pthread_create(&g->thread, NULL, watchdog, g) != 0) {
        pthread_mutex_destroy(&g->mu);
        pthread_cond_destroy(&g->cv);
        free(g);
        return nk_status_make(NK_UNAVAILABLE, "cannot start the HTTP request watchdog thread");
    }
    *out = g;
    return NK_OK;
}

/* After the daemon has stopped (every connection closed). */
void http_guard_stop(struct http_guard *g)
{
    if (!g)
        return;
    pthread_mutex_lock(&g->mu);
    g->stop = true;
    pthread_cond_signal(&g->cv);
    pthread_mutex_unlock(&g->mu);
    pthread_join(g->thread, NULL);
    NK_ASSERT(g->conns == NULL);
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    free(g);
}

void http_guard_notify(void *cls, struct MHD_Connection *mc, void **socket_ctx, int toe)
{
    struct http_guard *g = ((struct api *)cls)->http_guard;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
        struct guard_conn *c = nk_calloc(1, sizeof(*c));
        c->fd = ci ? ci->connect_fd : -1;
        atomic_init(&c->since_ms, nk_mono_ms());
        atomic_init(&c->receiving, c->fd >= 0);
        pthread_mutex_lock(&g->mu);
        c->next = g->conns;
        if (g->conns)
            g->conns->prev = c;
        g->conns = c;
        pthread_mutex_unlock(&g->mu);
        *socket_ctx = c;
        return;
    }
    struct guard_conn *c = *socket_ctx;
    if (!c)
        return;
    pthread_mutex_lock(&g->mu);
    if (c->prev)
        c->prev->next = c->next;
    else
        g->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    pthread_mutex_unlock(&g->mu);
    *socket_ctx = NULL;
    free(c);
}

static struct guard_conn *conn_of(struct MHD_Connection *mc)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(mc, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

void http_guard_request_received(struct MHD_Connection *mc)
{
    struct guard_conn *c = conn_of(mc);
    if (c)
        atomic_store(&c->receiving, false);
}

void http_guard_request_done(struct MHD_Connection *mc)
{
    struct guard_conn *c = conn_of(mc);
    if (c) {
        atomic_store(&c->since_ms, nk_mono_ms());
        atomic_store(&c->receiving, true);
    }
}
