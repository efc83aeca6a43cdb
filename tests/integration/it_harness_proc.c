/*
 * The harness's process control on small shell children: the first stdout
 * line is waited for and later lines read in order, stderr lands in a file
 * a test can grep, a child that ignores SIGTERM is killed after the grace
 * period along with everything in its process group, and a child that
 * exits or stays silent before its first line is reported, not waited on
 * forever.
 */
#include "check.h"
#include "harness.h"

#include "err.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static void test_lines_and_stderr(void)
{
    const char *const argv[] = {
        "sh", "-c",
        "echo first; echo 'token=s3cr3t-value' >&2; echo second; "
        "echo \"env=$CG_TEST_VAR\"; exec cat",
        NULL
    };
    const char *const env[] = { "CG_TEST_VAR=from-harness", NULL };
    const struct cg_harness_proc_opts opts = { .name = "lines",
                                               .env = env,
                                               .stdin_pipe = true };
    char errbuf[256], line[256];
    struct cg_harness_proc *p =
        cg_harness_proc_start(argv, &opts, errbuf, sizeof(errbuf));
    int status = -1;

    CHECK(p != NULL, "start: %s", errbuf);
    if (!p)
        return;
    CHECK(strcmp(cg_harness_proc_first_line(p), "first") == 0,
          "first line is `first` (`%s`)", cg_harness_proc_first_line(p));
    CHECK(cg_harness_proc_read_line(p, line, sizeof(line), 5000) == 0 &&
              strcmp(line, "second") == 0,
          "next line is `second` (`%s`)", line);
    CHECK(cg_harness_proc_read_line(p, line, sizeof(line), 5000) == 0 &&
              strcmp(line, "env=from-harness") == 0,
          "environment reaches the child (`%s`)", line);
    CHECK(write(cg_harness_proc_stdin(p), "echoed\n", 7) == 7,
          "write to the child's stdin");
    CHECK(cg_harness_proc_read_line(p, line, sizeof(line), 5000) == 0 &&
              strcmp(line, "echoed") == 0,
          "stdin reaches the child (`%s`)", line);
    CHECK(cg_harness_proc_wait_for(p, "second", 1000) == 0,
          "wait_for finds an earlier line");
    /* cat exits at end of its stdin: closing ours ends it cleanly. */
    close(cg_harness_proc_stdin(p));
    CHECK(cg_harness_proc_wait(p, 10000, &status) == 0 && WIFEXITED(status) &&
              WEXITSTATUS(status) == 0,
          "child exits 0 at end of stdin (status %d)", status);
    CHECK(cg_harness_proc_read_line(p, line, sizeof(line), 5000) == CG_EIO,
          "reading past the end reports the end");
    CHECK(cg_harness_file_grep(cg_harness_proc_stderr_path(p),
                               "s3cr3t-value") == 1,
          "stderr is captured in %s", cg_harness_proc_stderr_path(p));
    CHECK(cg_harness_file_grep(cg_harness_proc_stdout_path(p), "second") == 1,
          "stdout is kept in %s", cg_harness_proc_stdout_path(p));
    cg_harness_proc_free(p);
}

static void test_stop_escalates(void)
{
    /* The shell ignores SIGTERM and so does its sleeping child; both are
     * in the group and must be gone after stop. */
    const char *const argv[] = {
        "/bin/sh", "-c", "trap '' TERM; sleep 600 & echo \"sleeper=$!\"; wait",
        NULL
    };
    char errbuf[256];
    struct cg_harness_proc *p =
        cg_harness_proc_start(argv, NULL, errbuf, sizeof(errbuf));
    long sleeper;
    int64_t t0;
    int status;

    CHECK(p != NULL, "start: %s", errbuf);
    if (!p)
        return;
    sleeper = strtol(cg_harness_proc_first_line(p) + 8, NULL, 10);
    CHECK(sleeper > 0 && kill((pid_t)sleeper, 0) == 0,
          "the grandchild %ld runs", sleeper);
    t0 = cg_harness_now_ms();
    status = cg_harness_proc_stop(p, 300);
    CHECK(status >= 0 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
          "a child ignoring SIGTERM gets SIGKILL (status %d)", status);
    CHECK(cg_harness_now_ms() - t0 < 5000, "stop is bounded (%lld ms)",
          (long long)(cg_harness_now_ms() - t0));
    CHECK(!cg_harness_proc_running(p), "child is reaped");
    CHECK(cg_harness_pid_wait_gone((pid_t)sleeper, 5000) == 0,
          "the grandchild %ld is gone too", sleeper);
    waitpid((pid_t)sleeper, NULL, WNOHANG); /* ours, as subreaper */
    cg_harness_proc_free(p);
}

static void test_start_failures(void)
{
    const char *const silent[] = { "sh", "-c", "exec sleep 600", NULL };
    const char *const dies[] = { "sh", "-c", "echo 'bad flag --x' >&2; exit 3",
                                 NULL };
    const char *const missing[] = { "/nonexistent/contactguard-x", NULL };
    const struct cg_harness_proc_opts quick = { .line_timeout_ms = 300 };
    char errbuf[256];
    struct cg_harness_proc *p;
    int64_t t0 = cg_harness_now_ms();

    p = cg_harness_proc_start(silent, &quick, errbuf, sizeof(errbuf));
    CHECK(p == NULL && strstr(errbuf, "stayed silent"),
          "a silent child is reported: %s", errbuf);
    CHECK(cg_harness_now_ms() - t0 < 5000, "and not waited on long");
    cg_harness_proc_free(p);

    p = cg_harness_proc_start(dies, NULL, errbuf, sizeof(errbuf));
    CHECK(p == NULL && strstr(errbuf, "exited") &&
              strstr(errbuf, "bad flag --x"),
          "a child that dies is reported with its stderr: %s", errbuf);
    cg_harness_proc_free(p);

    p = cg_harness_proc_start(missing, NULL, errbuf, sizeof(errbuf));
    CHECK(p == NULL && strstr(errbuf, "exec"),
          "a missing binary is reported: %s", errbuf);
    cg_harness_proc_free(p);
}

/* A contactguard binary found through cg_harness_binaries(). */
static void test_binary_path(void)
{
    const char *const argv[] = { CG_BIN_CONTACTGUARD_DEVBROKER, "--help",
                                 NULL };
    char errbuf[256];
    struct cg_harness_proc *p =
        cg_harness_proc_start(argv, NULL, errbuf, sizeof(errbuf));
    int status = -1;

    CHECK(p != NULL, "start %s: %s", argv[0], errbuf);
    if (!p)
        return;
    CHECK(strncmp(cg_harness_proc_first_line(p), "usage:", 6) == 0,
          "--help prints usage first (`%s`)", cg_harness_proc_first_line(p));
    CHECK(cg_harness_proc_wait(p, 10000, &status) == 0 && WIFEXITED(status) &&
              WEXITSTATUS(status) == 0,
          "--help exits 0 (%d)", status);
    cg_harness_proc_free(p);
}

int main(void)
{
    /* Orphaned grandchildren come to us, so that they can be reaped. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    test_lines_and_stderr();
    test_stop_escalates();
    test_start_failures();
    test_binary_path();
    return check_done();
}
