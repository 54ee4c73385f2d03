/*
 * faultfs_test.c: the fault-injecting file layer itself. A simulated power
 * cut keeps exactly what was synced (plus possibly a prefix of what was
 * not), reverts directory changes that were not made durable, and injected
 * errors hit only the operations and paths they name.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "testlib.h"

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = nk_malloc(n);
    snprintf(p, n, "%s/%s", a, b);
    return p;
}

static void write_str(int fd, const char *s)
{
    NK_ASSERT(nk_fs_write(fd, s, strlen(s)) == (long)strlen(s));
}

/* The file's contents as a string ("" when missing; *exists says which). */
static void read_str(const char *path, char *out, size_t cap, bool *exists)
{
    out[0] = 0;
    int fd = open(path, O_RDONLY);
    *exists = fd >= 0;
    if (fd < 0)
        return;
    ssize_t n = read(fd, out, cap - 1);
    out[n > 0 ? n : 0] = 0;
    close(fd);
}

NK_TEST(power_cut_keeps_synced_data_and_at_most_a_prefix_of_the_rest)
{
    const char *dir = nk_test_tmpdir();
    char *stash = join(dir, "stash");
    uint64_t seed = nk_test_seed();
    nk_faultfs_install(stash, seed);
    char *path = join(dir, "f");
    int kept_all = 0, lost_all = 0;
    for (int round = 0; round < 200; round++) {
        int fd = nk_fs_open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        NK_REQUIRE(fd >= 0);
        write_str(fd, "synced;");
        NK_REQUIRE(nk_fs_fdatasync(fd) == 0);
        nk_status s = nk_fsync_dir(dir);
        NK_REQUIRE(nk_ok(s));
        write_str(fd, "unsynced-1;");
        write_str(fd, "unsynced-2;");
        nk_fs_close(fd);
        nk_faultfs_power_restore();
        char buf[256];
        bool exists;
        read_str(path, buf, sizeof buf, &exists);
        NK_REQUIRE(exists);
        NK_CHECK(strncmp(buf, "synced;", 7) == 0);
        NK_CHECK(strncmp(buf, "synced;unsynced-1;unsynced-2;", strlen(buf)) == 0);
        kept_all += strcmp(buf, "synced;unsynced-1;unsynced-2;") == 0;
        lost_all += strcmp(buf, "synced;") == 0;
    }
    NK_CHECK(kept_all > 0 && lost_all > 0);
    nk_faultfs_uninstall();
    free(path);
    free(stash);
}

NK_TEST(power_cut_reverts_directory_changes_not_followed_by_a_directory_fsync)
{
    const char *dir = nk_test_tmpdir();
    char *stash = join(dir, "stash");
    nk_faultfs_install(stash, nk_test_seed());
    char *a = join(dir, "a"), *b = join(dir, "b"), *c = join(dir, "c");
    int vanished = 0, returned = 0;
    for (int round = 0; round < 100; round++) {
        /* a: created and synced, directory synced: always survives */
        int fd = nk_fs_open(a, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        write_str(fd, "a");
        nk_fs_fdatasync(fd);
        nk_fs_close(fd);
        /* c: durable, then unlinked without a directory fsync */
        fd = nk_fs_open(c, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        write_str(fd, "c");
        nk_fs_fdatasync(fd);
        nk_fs_close(fd);
        nk_status s = nk_fsync_dir(dir);
        NK_REQUIRE(nk_ok(s));
        NK_REQUIRE(nk_fs_unlink(c) == 0);
        /* b: data synced but its directory entry never */
        fd = nk_fs_open(b, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        write_str(fd, "b");
        nk_fs_fdatasync(fd);
        nk_fs_close(fd);
        nk_faultfs_power_restore();
        char buf[64];
        bool exists;
        read_str(a, buf, sizeof buf, &exists);
        NK_CHECK(exists && strcmp(buf, "a") == 0);
        read_str(b, buf, sizeof buf, &exists);
        vanished += !exists;
        read_str(c, buf, sizeof buf, &exists);
        if (exists) {
            NK_CHECK(strcmp(buf, "c") == 0);
            returned++;
            unlink(c);
        }
        unlink(b);
    }
    NK_CHECK(vanished > 0);
    NK_CHECK(returned > 0);
    nk_faultfs_uninstall();
    free(a);
    free(b);
    free(c);
    free(stash);
}

NK_TEST(atomic_file_write_survives_a_cut_whole_or_not_at_all)
{
    const char *dir = nk_test_tmpdir();
    char *stash = join(dir, "stash");
    uint64_t seed = nk_test_seed();
    nk_faultfs_install(stash, seed);
    char *path = join(dir, "CURRENT");
    nk_status s = nk_write_file_atomic(path, "old", 3);
    NK_REQUIRE(nk_ok(s));
    struct nk_rng rng;
    nk_rng_seed(&rng, seed);
    for (int round = 0; round < 200; round++) {
        nk_faultfs_cut_after(1 + nk_rng_uniform(&rng, 6));
        s = nk_write_file_atomic(path, "new-contents", 12);
        bool acked = nk_ok(s);
        nk_status_free(&s);
        nk_faultfs_power_restore();
        char buf[64];
        bool exists;
        read_str(path, buf, sizeof buf, &exists);
        NK_CHECK(exists);
        NK_CHECK(strcmp(buf, "old") == 0 || strcmp(buf, "new-contents") == 0);
        if (acked)
            NK_CHECK(strcmp(buf, "new-contents") == 0);
        s = nk_write_file_atomic(path, "old", 3);
        NK_REQUIRE(nk_ok(s));
    }
    nk_faultfs_uninstall();
    free(path);
    free(stash);
}

NK_TEST(injected_errors_hit_only_the_named_operations_and_paths)
{
    const char *dir = nk_test_tmpdir();
    char *stash = join(dir, "stash");
    nk_faultfs_install(stash, 1);
    char *x = join(dir, "x.sst"), *y = join(dir, "y.log");
    nk_faultfs_fail(NK_FAULT_WRITE, ".sst", ENOSPC, 2);
    int fx = nk_fs_open(x, O_WRONLY | O_CREAT, 0644);
    int fy = nk_fs_open(y, O_WRONLY | O_CREAT, 0644);
    NK_REQUIRE(fx >= 0 && fy >= 0);
    NK_CHECK(nk_fs_write(fy, "1", 1) == 1);
    NK_CHECK(nk_fs_write(fx, "1", 1) == -1 && errno == ENOSPC);
    NK_CHECK(nk_fs_write(fx, "1", 1) == -1 && errno == ENOSPC);
    NK_CHECK(nk_fs_write(fx, "1", 1) == 1); /* the rule ran out */
    NK_CHECK_EQ_U64(nk_faultfs_injected(), 2);
    nk_faultfs_fail(NK_FAULT_SYNC, NULL, EIO, -1);
    NK_CHECK(nk_fs_fdatasync(fy) == -1 && errno == EIO);
    nk_faultfs_fail(NK_FAULT_SYNC, NULL, EIO, 0);
    NK_CHECK(nk_fs_fdatasync(fy) == 0);
    nk_fs_close(fx);
    nk_fs_close(fy);
    nk_faultfs_uninstall();
    free(x);
    free(y);
    free(stash);
}
