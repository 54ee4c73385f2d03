/*
 * dashboard_assets.h: the dashboard's files (src/api/dashboard/), embedded
 * in the binary at build time by embed_assets.cmake so that /dashboard needs
 * no files on disk and no network. The data are static and read-only.
 */
#ifndef NK_API_DASHBOARD_ASSETS_H
#define NK_API_DASHBOARD_ASSETS_H

#include <stddef.h>

struct dashboard_asset {
    const char *name;         /* file name, e.g. "index.html" */
    const char *content_type; /* from its extension */
    const unsigned char *data;
    size_t len;
};

extern const struct dashboard_asset dashboard_assets[];
extern const size_t dashboard_asset_count;

/* The asset called name (exact), or NULL. */
const struct dashboard_asset *dashboard_asset_find(const char *name);

#endif /* NK_API_DASHBOARD_ASSETS_H */
