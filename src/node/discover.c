/*
 * discover.c: who listens at a seed address. A new member must learn the
 * node ids of the other initial members, but its configuration names only
 * their peer addresses (NoriKV v1's cluster.seed_nodes), and the transport
 * accepts sessions only between known ids. So at bootstrap the node opens a
 * plain TCP connection to each seed, reads the HELLO frame every transport
 * sends first (docs/format/peer-frames.md), and closes: the HELLO names the
 * node (id and name). Identity still comes from the peer's own words, not
 * from the address, so a seed address may be a proxy.
 */
#include "node/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transport/transport.h"

static int dial(const char *addr, int timeout_ms)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || (size_t)(colon - addr) >= sizeof host)
        return -1;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = 0;
    char *h = host;
    if (h[0] == '[' && h[strlen(h) - 1] == ']') {
        h[strlen(h) - 1] = 0;
        h++;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    if (getaddrinfo(h, colon + 1, &hints, &res) != 0 || !res)
        return -1;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) != 0 && errno != EINPROGRESS) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        return -1;
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int err = 0;
    socklen_t el = sizeof err;
    if (poll(&p, 1, timeout_ms) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 ||
        err != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

nk_status node_discover(const char *addr, uint32_t total_shards, int timeout_ms, uint64_t *id,
                        char *name, size_t name_cap, uint64_t *cluster_id)
{
    int fd = dial(addr, timeout_ms);
    if (fd < 0)
        return nk_status_make(NK_UNAVAILABLE, "seed %s: no answer", addr);
    struct transport_decoder dec;
    transport_decoder_init(&dec, TRANSPORT_HELLO_MAX);
    uint64_t until = nk_mono_ms() + (uint64_t)timeout_ms;
    nk_status s = nk_status_make(NK_UNAVAILABLE, "seed %s: no HELLO within %d ms", addr,
                                 timeout_ms);
    uint8_t buf[2048];
    for (;;) {
        uint64_t now = nk_mono_ms();
        if (now >= until)
            break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)(until - now)) != 1)
            break;
        ssize_t k = read(fd, buf, sizeof buf);
        if (k <= 0)
            break;
        const uint8_t *q = buf;
        size_t left = (size_t)k;
        struct transport_frame f;
        nk_status err = NK_OK;
        enum transport_decode_result r = transport_decoder_next(&dec, &q, &left, &f, &err);
        if (r == TRANSPORT_DECODE_ERROR) {
            nk_status_free(&s);
            s = nk_status_wrap(err, "seed %s", addr);
            break;
        }
        if (r == TRANSPORT_DECODE_FRAME) {
            struct transport_hello h;
            nk_status_free(&s);
            s = f.type == TRANSPORT_FRAME_HELLO
                    ? transport_hello_decode(f.data, f.len, &h)
                    : nk_status_make(NK_DATA_LOSS, "seed %s: the first frame is not a HELLO",
                                     addr);
            if (nk_ok(s) && h.total_shards != total_shards) {
                s = nk_status_make(NK_FAILED_PRECONDITION,
                                   "seed %s (node %s) has total_shards=%u but this node %u; "
                                   "every member must be configured alike",
                                   addr, h.name, h.total_shards, total_shards);
            } else if (nk_ok(s)) {
                *id = h.node_id;
                snprintf(name, name_cap, "%s", h.name);
                if (cluster_id)
                    *cluster_id = h.cluster_id;
            }
            break;
        }
    }
    transport_decoder_free(&dec);
    close(fd);
    return s;
}
