/* arena.c: bump allocation in 64 KiB blocks; large requests get their own. */
#include "util/util.h"

#include <stdlib.h>

#define ARENA_BLOCK 65536

struct nk_arena_block {
    struct nk_arena_block *next;
    size_t size;
    /* data follows, 16-byte aligned */
} __attribute__((aligned(16)));

void nk_arena_init(struct nk_arena *a)
{
    memset(a, 0, sizeof(*a));
}

void nk_arena_free(struct nk_arena *a)
{
    struct nk_arena_block *b = a->blocks;
    while (b) {
        struct nk_arena_block *n = b->next;
        free(b);
        b = n;
    }
    nk_arena_init(a);
}

static uint8_t *new_block(struct nk_arena *a, size_t n)
{
    struct nk_arena_block *b = nk_malloc(sizeof(*b) + n);
    b->size = n;
    b->next = a->blocks;
    a->blocks = b;
    a->usage += sizeof(*b) + n;
    return (uint8_t *)(b + 1);
}

void *nk_arena_alloc(struct nk_arena *a, size_t n)
{
    if (n <= a->left) {
        void *p = a->ptr;
        a->ptr += n;
        a->left -= n;
        return p;
    }
    if (n > ARENA_BLOCK / 4)
        return new_block(a, n); /* keep the current block's tail in use */
    a->ptr = new_block(a, ARENA_BLOCK);
    a->left = ARENA_BLOCK;
    void *p = a->ptr;
    a->ptr += n;
    a->left -= n;
    return p;
}

void *nk_arena_alloc_aligned(struct nk_arena *a, size_t n)
{
    size_t pad = (8 - ((uintptr_t)a->ptr & 7)) & 7;
    if (n + pad <= a->left) {
        a->ptr += pad;
        a->left -= pad;
        return nk_arena_alloc(a, n);
    }
    /* Not enough room with the padding: start a fresh block (16-byte aligned)
     * even when n alone would fit in this one's tail. */
    void *p;
    if (n > ARENA_BLOCK / 4) {
        p = new_block(a, n);
    } else {
        a->ptr = new_block(a, ARENA_BLOCK);
        a->left = ARENA_BLOCK;
        p = nk_arena_alloc(a, n);
    }
    NK_ASSERT(((uintptr_t)p & 7) == 0);
    return p;
}
