/* status.c: nk_status construction, assertions and never-failing allocation. */
#include "util/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

static char *vformat(const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        n = 0;
    char *s = nk_malloc((size_t)n + 1);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

nk_status nk_status_make(enum nk_code code, const char *fmt, ...)
{
    NK_ASSERT(code != NK_CODE_OK);
    va_list ap;
    va_start(ap, fmt);
    char *m = vformat(fmt, ap);
    va_end(ap);
    return (nk_status){code, m};
}

nk_status nk_status_errno(int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *what = vformat(fmt, ap);
    va_end(ap);
    enum nk_code code = NK_IO_ERROR;
    if (err == ENOENT)
        code = NK_NOT_FOUND;
    else if (err == ENOSPC || err == EDQUOT || err == EMFILE || err == ENFILE || err == ENOMEM)
        code = NK_RESOURCE_EXHAUSTED;
    else if (err == EADDRINUSE)
        code = NK_ALREADY_EXISTS;
    nk_status s = nk_status_make(code, "%s: %s", what, strerror(err));
    free(what);
    return s;
}

void nk_status_free(nk_status *s)
{
    free(s->msg);
    s->msg = NULL;
    s->code = NK_CODE_OK;
}

nk_status nk_status_wrap(nk_status s, const char *fmt, ...)
{
    if (nk_ok(s))
        return s;
    va_list ap;
    va_start(ap, fmt);
    char *pre = vformat(fmt, ap);
    va_end(ap);
    nk_status out = nk_status_make(s.code, "%s: %s", pre, nk_status_msg(s));
    free(pre);
    nk_status_free(&s);
    return out;
}

const char *nk_code_name(enum nk_code code)
{
    switch (code) {
    case NK_CODE_OK: return "OK";
    case NK_CANCELLED: return "CANCELLED";
    case NK_UNKNOWN: return "UNKNOWN";
    case NK_INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case NK_DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case NK_NOT_FOUND: return "NOT_FOUND";
    case NK_ALREADY_EXISTS: return "ALREADY_EXISTS";
    case NK_PERMISSION_DENIED: return "PERMISSION_DENIED";
    case NK_RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case NK_FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case NK_ABORTED: return "ABORTED";
    case NK_OUT_OF_RANGE: return "OUT_OF_RANGE";
    case NK_UNIMPLEMENTED: return "UNIMPLEMENTED";
    case NK_INTERNAL: return "INTERNAL";
    case NK_UNAVAILABLE: return "UNAVAILABLE";
    case NK_DATA_LOSS: return "DATA_LOSS";
    case NK_UNAUTHENTICATED: return "UNAUTHENTICATED";
    case NK_IO_ERROR: return "IO_ERROR";
    }
    return "UNKNOWN";
}

void nk_assert_fail(const char *expr, const char *file, int line, const char *func)
{
    fprintf(stderr, "assertion failed: %s (%s:%d in %s)\n", expr, file, line, func);
    fflush(stderr);
    abort();
}

void nk_panic(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "panic: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    fflush(stderr);
    abort();
}

void *nk_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        nk_panic("out of memory allocating %zu bytes", n);
    return p;
}

void *nk_calloc(size_t count, size_t n)
{
    void *p = calloc(count ? count : 1, n ? n : 1);
    if (!p)
        nk_panic("out of memory allocating %zu x %zu bytes", count, n);
    return p;
}

void *nk_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        nk_panic("out of memory reallocating to %zu bytes", n);
    return q;
}

char *nk_strdup(const char *s)
{
    return nk_memdup(s, strlen(s) + 1);
}

void *nk_memdup(const void *p, size_t n)
{
    void *q = nk_malloc(n);
    if (n)
        memcpy(q, p, n);
    return q;
}
