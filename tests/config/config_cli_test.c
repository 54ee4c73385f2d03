/*
 * config_cli_test: the real norikv-server binary's command line. --help exits
 * 0 listing every flag; a bad configuration (unknown key, out-of-range value,
 * malformed address, missing file, unknown flag) stops it before it opens
 * anything, with a non-zero exit and a message naming the key or flag.
 * Each run is bounded: a server that unexpectedly starts is killed.
 */
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

#define NK_TEST_NO_MAIN
#include "testlib.h"

static char server_bin[1024];

struct run {
    int status; /* exit code, or -1 when killed */
    char out[65536];
    char err[65536];
};

static void read_all(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        if (n == cap - 1)
            break;
    }
    buf[n] = 0;
}

/* Runs the server with argv (NULL-terminated), at most 20 s. */
static void run_server(struct run *r, const char *const *args)
{
    char errpath[1100], outpath[1100];
    snprintf(outpath, sizeof outpath, "%s/stdout", nk_test_tmpdir());
    snprintf(errpath, sizeof errpath, "%s/stderr", nk_test_tmpdir());
    pid_t pid = fork();
    NK_ASSERT(pid >= 0);
    if (pid == 0) {
        int o = open(outpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(o, 1);
        dup2(e, 2);
        char *argv[32];
        int n = 0;
        argv[n++] = server_bin;
        for (; args[n - 1] && n < 31; n++)
            argv[n] = (char *)args[n - 1];
        argv[n] = NULL;
        execv(server_bin, argv);
        _exit(127);
    }
    int st = 0;
    uint64_t deadline = nk_mono_ms() + 20000;
    r->status = -1;
    for (;;) {
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid) {
            r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
            break;
        }
        if (nk_mono_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            break;
        }
        nk_sleep_us(5000);
    }
    int fd = open(outpath, O_RDONLY);
    read_all(fd, r->out, sizeof r->out);
    close(fd);
    fd = open(errpath, O_RDONLY);
    read_all(fd, r->err, sizeof r->err);
    close(fd);
}

static const char *write_cfg(const char *name, const char *text)
{
    static char path[1100];
    snprintf(path, sizeof path, "%s/%s", nk_test_tmpdir(), name);
    FILE *f = fopen(path, "w");
    NK_ASSERT(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* The run failed (non-zero exit, not killed) and stderr holds every needle. */
static bool failed_saying(const struct run *r, const char *a, const char *b)
{
    bool ok = r->status > 0 && strstr(r->err, a) && (!b || strstr(r->err, b));
    if (!ok)
        fprintf(stderr, "  exit %d, stderr:\n%s\n", r->status, r->err);
    return ok;
}

static struct run r;

NK_TEST(help_exits_zero_and_lists_every_flag)
{
    const char *args[] = {"--help", NULL};
    run_server(&r, args);
    NK_CHECK(r.status == 0);
    NK_CHECK(strstr(r.out, "--rpc-addr") && strstr(r.out, "--cluster-total-shards"));
    NK_CHECK(strstr(r.out, "--ephemeral") && strstr(r.out, "--storage-wal-fsync"));
    NK_CHECK(strstr(r.out, "default: 127.0.0.1:9001"));
}

NK_TEST(unknown_key_in_the_file_stops_the_server_naming_key_and_line)
{
    const char *path = write_cfg("unknown.yaml", "node_id: n1\n"
                                                 "cluster:\n"
                                                 "  total_shards: 256\n"
                                                 "  shard_count: 256\n");
    const char *args[] = {path, NULL};
    run_server(&r, args);
    NK_CHECK(failed_saying(&r, "unknown.yaml:4:", "unknown key \"cluster.shard_count\""));
}

NK_TEST(out_of_range_total_shards_stops_the_server_naming_the_key)
{
    const char *path = write_cfg("zero.yaml", "cluster:\n  total_shards: 0\n");
    const char *args[] = {"--config", path, NULL};
    run_server(&r, args);
    NK_CHECK(failed_saying(&r, "zero.yaml:2: cluster.total_shards", "out of range"));
    const char *args2[] = {"--ephemeral", "--cluster-total-shards", "65537", NULL};
    run_server(&r, args2);
    NK_CHECK(failed_saying(&r, "--cluster-total-shards (cluster.total_shards)", "65537"));
}

NK_TEST(malformed_address_missing_file_and_unknown_flag_stop_the_server)
{
    const char *args[] = {"--ephemeral", "--rpc-addr", "127.0.0.1", NULL};
    run_server(&r, args);
    NK_CHECK(failed_saying(&r, "--rpc-addr (rpc_addr)", "missing :port"));
    char missing[1100];
    snprintf(missing, sizeof missing, "%s/absent.yaml", nk_test_tmpdir());
    const char *args2[] = {missing, NULL};
    run_server(&r, args2);
    NK_CHECK(failed_saying(&r, "absent.yaml", "not found"));
    const char *args3[] = {"--ephemeral", "--rpc-adr", "127.0.0.1:0", NULL};
    run_server(&r, args3);
    NK_CHECK(failed_saying(&r, "unknown flag --rpc-adr", "did you mean --rpc-addr"));
    const char *path = write_cfg("bad.yaml", "node_id: [unclosed\n");
    const char *args4[] = {path, NULL};
    run_server(&r, args4);
    NK_CHECK(failed_saying(&r, "bad.yaml:", "malformed YAML"));
}

int main(int argc, char **argv)
{
    const char *build = getenv("NK_BUILD_DIR");
    if (!build) {
        fprintf(stderr, "NK_BUILD_DIR is not set (run through ctest)\n");
        return 2;
    }
    snprintf(server_bin, sizeof server_bin, "%s/src/server/norikv-server", build);
    if (access(server_bin, X_OK) != 0) {
        fprintf(stderr, "%s is not built\n", server_bin);
        return 2;
    }
    int passed = 0, failed = 0;
    for (int i = 0; i < nk_ntests_; i++) {
        if (argc > 1 && !strstr(nk_tests_[i].name, argv[1]))
            continue;
        nk_test_failed_ = 0;
        nk_test_dir_[0] = 0;
        nk_test_current_ = nk_tests_[i].name;
        nk_tests_[i].fn();
        fprintf(stderr, "%s %s%s%s\n", nk_test_failed_ ? "FAIL" : "ok  ", nk_tests_[i].name,
                nk_test_failed_ && nk_test_dir_[0] ? " files kept in " : "", nk_test_dir_);
        if (nk_test_failed_) {
            failed++;
        } else {
            passed++;
            if (nk_test_dir_[0]) {
                nk_status s = nk_remove_tree(nk_test_dir_);
                nk_status_free(&s);
            }
        }
    }
    fprintf(stderr, "%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
