#include "harness.h"

#include "conf.h"
#include "err.h"
#include "mem.h"
#include "redis.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <librdkafka/rdkafka.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CG_HARNESS_DEVBROKER
#error "CG_HARNESS_DEVBROKER (path of contactguard-devbroker) comes from CMake"
#endif
#ifndef CG_HARNESS_REDIS_SERVER
#define CG_HARNESS_REDIS_SERVER "redis-server"
#endif

#define HARNESS_CMD_TIMEOUT_MS 10000
#define HARNESS_REDIS_TRIES    5

extern char **environ;

struct cg_harness_proc {
    char *name;
    pid_t pid;
    pid_t owner; /* only the process that started a child stops it */
    int pidfd;   /* -1 where pidfd_open is missing: wait polls instead */
    int stdin_fd;
    int out_fd;
    FILE *out_file;
    char *stdout_path;
    char *stderr_path;
    char *first_line;
    bool reaped;
    int status;

    pthread_t reader;
    bool reader_running;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* a line arrived or stdout ended */
    char **lines;
    size_t nlines, cap;
    size_t cursor;
    bool eof;

    struct cg_harness_proc *next, *prev;
};

/*
 * The registry of live children and the file directory. A process-wide
 * list is the only way to reach the children from atexit(), which takes
 * no argument; it is touched only under the lock.
 */
static struct {
    pthread_mutex_t lock;
    struct cg_harness_proc *head;
    bool atexit_set;
    unsigned seq;
    char dir[PATH_MAX];
    pid_t dir_owner;
} harness = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* ---- small things ----------------------------------------------------- */

int64_t cg_harness_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int remove_entry(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw)
{
    remove(path);
    return 0;
}

static void harness_atexit(void);

static void harness_register(struct cg_harness_proc *p)
{
    pthread_mutex_lock(&harness.lock);
    if (!harness.atexit_set) {
        atexit(harness_atexit);
        harness.atexit_set = true;
    }
    p->next = harness.head;
    if (harness.head)
        harness.head->prev = p;
    harness.head = p;
    pthread_mutex_unlock(&harness.lock);
}

static void harness_unregister(struct cg_harness_proc *p)
{
    pthread_mutex_lock(&harness.lock);
    if (p->prev)
        p->prev->next = p->next;
    else if (harness.head == p)
        harness.head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    p->next = p->prev = NULL;
    pthread_mutex_unlock(&harness.lock);
}

const char *cg_harness_dir(void)
{
    pthread_mutex_lock(&harness.lock);
    if (!harness.dir[0]) {
        const char *tmp = getenv("TMPDIR");

        snprintf(harness.dir, sizeof(harness.dir), "%s/cg-harness-XXXXXX",
                 tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(harness.dir)) {
            /* Nothing sensible to continue with: every server needs it. */
            fprintf(stderr, "harness: mkdtemp %s: %s\n", harness.dir,
                    strerror(errno));
            abort();
        }
        harness.dir_owner = getpid();
        if (!harness.atexit_set) {
            atexit(harness_atexit);
            harness.atexit_set = true;
        }
    }
    pthread_mutex_unlock(&harness.lock);
    return harness.dir;
}

int cg_harness_free_port(char *errbuf, size_t errsz)
{
    struct sockaddr_in sa = { .sin_family = AF_INET };
    socklen_t salen = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int port = CG_EIO;

    if (fd < 0)
        return cg_err_set(errbuf, errsz, CG_EIO, "socket: %s", strerror(errno));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &salen) < 0)
        cg_err_set(errbuf, errsz, CG_EIO, "bind 127.0.0.1:0: %s",
                   strerror(errno));
    else
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

static int tcp_connect(int port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET };
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((uint16_t)port);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

bool cg_harness_port_open(int port)
{
    int fd = tcp_connect(port);

    if (fd < 0)
        return false;
    close(fd);
    return true;
}

int cg_harness_wait_port(int port, int timeout_ms)
{
    int64_t deadline = cg_harness_now_ms() + timeout_ms;

    /* A refused connect returns at once and nothing announces the
     * listener, so retry at a short interval up to the deadline. */
    while (!cg_harness_port_open(port)) {
        if (cg_harness_now_ms() >= deadline)
            return CG_ETIMEOUT;
        poll(NULL, 0, 10);
    }
    return 0;
}

int cg_harness_pid_wait_gone(pid_t pid, int timeout_ms)
{
    int64_t deadline = cg_harness_now_ms() + timeout_ms;
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    int rc = CG_ETIMEOUT;

    if (fd < 0) {
        if (errno == ESRCH)
            return 0;
        /* No pidfd: kill(pid, 0) cannot tell a zombie from a live process,
         * so this fallback only sees processes that were reaped. */
        while (kill(pid, 0) == 0 && cg_harness_now_ms() < deadline)
            poll(NULL, 0, 10);
        return kill(pid, 0) == 0 ? CG_ETIMEOUT : 0;
    }
    for (;;) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        int64_t left = deadline - cg_harness_now_ms();
        int n = poll(&pfd, 1, left > 0 ? (int)left : 0);

        if (n > 0) {
            rc = 0;
            break;
        }
        if ((n == 0 && left <= 0) || (n < 0 && errno != EINTR))
            break;
    }
    close(fd);
    return rc;
}

int cg_harness_file_grep(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0;
    int n = 0;

    if (!f)
        return CG_EIO;
    while (getline(&line, &cap, f) >= 0)
        if (strstr(line, needle))
            n++;
    free(line);
    fclose(f);
    return n;
}

/* ---- processes -------------------------------------------------------- */

static void push_line(struct cg_harness_proc *p, char *line, size_t ll)
{
    line[ll] = '\0';
    if (ll > 0 && line[ll - 1] == '\r')
        line[ll - 1] = '\0';
    pthread_mutex_lock(&p->lock);
    if (p->nlines < CG_HARNESS_LINES_MAX) {
        if (p->nlines == p->cap) {
            p->cap = p->cap ? p->cap * 2 : 64;
            p->lines = cg_realloc(p->lines, p->cap * sizeof(*p->lines));
        }
        p->lines[p->nlines++] = cg_strdup(line);
    }
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

/* Drains the child's stdout into the stdout file and the line list, so a
 * chatty child never blocks on a full pipe. */
static void *proc_reader(void *arg)
{
    struct cg_harness_proc *p = arg;
    char buf[8192];
    char *line = cg_malloc(CG_HARNESS_LINE_MAX);
    size_t ll = 0;

    /* Only the blocking read may be cancelled (see proc_join_reader), never
     * a moment that holds a lock. */
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
    for (;;) {
        ssize_t r;

        pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
        r = read(p->out_fd, buf, sizeof(buf));
        pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        fwrite(buf, 1, (size_t)r, p->out_file);
        fflush(p->out_file);
        for (ssize_t i = 0; i < r; i++) {
            if (buf[i] == '\n') {
                push_line(p, line, ll);
                ll = 0;
            } else if (ll < CG_HARNESS_LINE_MAX - 1) {
                line[ll++] = buf[i];
            }
        }
    }
    if (ll > 0)
        push_line(p, line, ll); /* a last line without a newline */
    free(line);
    pthread_mutex_lock(&p->lock);
    p->eof = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

static void deadline_ts(struct timespec *ts, int timeout_ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += timeout_ms / 1000;
    ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

int cg_harness_proc_read_line(struct cg_harness_proc *p, char *buf,
                              size_t bufsz, int timeout_ms)
{
    struct timespec ts;
    int rc = CG_ETIMEOUT;

    deadline_ts(&ts, timeout_ms);
    pthread_mutex_lock(&p->lock);
    for (;;) {
        if (p->cursor < p->nlines) {
            cg_strlcpy(buf, p->lines[p->cursor++], bufsz);
            rc = 0;
            break;
        }
        if (p->eof) {
            rc = CG_EIO;
            break;
        }
        if (pthread_cond_timedwait(&p->cond, &p->lock, &ts) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&p->lock);
    return rc;
}

int cg_harness_proc_wait_for(struct cg_harness_proc *p, const char *needle,
                             int timeout_ms)
{
    struct timespec ts;
    size_t i = 0;
    int rc = CG_ETIMEOUT;

    deadline_ts(&ts, timeout_ms);
    pthread_mutex_lock(&p->lock);
    for (;;) {
        for (; i < p->nlines; i++)
            if (strstr(p->lines[i], needle))
                break;
        if (i < p->nlines) {
            rc = 0;
            break;
        }
        if (p->eof) {
            rc = CG_EIO;
            break;
        }
        if (pthread_cond_timedwait(&p->cond, &p->lock, &ts) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&p->lock);
    return rc;
}

/* argv[0] as given when it has a slash, else the first match in PATH. */
static char *resolve_path(const char *prog)
{
    const char *path = getenv("PATH");
    char *copy, *save = NULL, *found = NULL;

    if (strchr(prog, '/'))
        return cg_strdup(prog);
    copy = cg_strdup(path && *path ? path : "/usr/local/bin:/usr/bin:/bin");
    for (char *d = strtok_r(copy, ":", &save); d && !found;
         d = strtok_r(NULL, ":", &save)) {
        char *cand = cg_asprintf("%s/%s", d, prog);
        if (access(cand, X_OK) == 0)
            found = cand;
        else
            free(cand);
    }
    free(copy);
    return found;
}

/* Our environment with the "NAME=value" entries of add put on top. */
static char **build_env(const char *const *add)
{
    size_t n = 0, k = 0, nadd = 0;
    char **envp;

    while (environ[n])
        n++;
    while (add && add[nadd])
        nadd++;
    envp = cg_calloc(n + nadd + 1, sizeof(*envp));
    for (size_t i = 0; i < n; i++) {
        const char *eq = strchr(environ[i], '=');
        size_t len = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        bool replaced = false;

        for (size_t j = 0; j < nadd && !replaced; j++)
            replaced =
                strncmp(add[j], environ[i], len) == 0 && add[j][len] == '=';
        if (!replaced)
            envp[k++] = environ[i];
    }
    for (size_t j = 0; j < nadd; j++)
        envp[k++] = (char *)add[j];
    return envp;
}

/* dup2() that also works when fd already is `to` (a test that closed its
 * stdin gets /dev/null as fd 0): dup2 would leave close-on-exec set. */
static int move_fd(int fd, int to)
{
    if (fd == to)
        return fcntl(fd, F_SETFD, 0);
    return dup2(fd, to);
}

/*
 * Between fork and exec in a threaded parent only async-signal-safe calls
 * are allowed: no malloc, no stdio. Failures are reported through errpipe,
 * which exec closes on success.
 */
static void child_exec(const char *path, char *const *argv, char *const *envp,
                       int in, int out, int err, int errpipe, pid_t parent)
{
    struct sigaction dfl = { .sa_handler = SIG_DFL };
    sigset_t none;
    int e;

    setpgid(0, 0);
    /* Die with the test process, however it ends. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127); /* the parent died before prctl took effect */
    if (move_fd(in, 0) < 0 || move_fd(out, 1) < 0 || move_fd(err, 2) < 0)
        goto fail;
    /* Nothing else of the test's (other children's pipes, sockets) may
     * leak into the child: a leaked pipe end would hide another child's
     * end of output. */
    if (syscall(SYS_close_range, 3U, ~0U, 4U /* CLOSE_RANGE_CLOEXEC */) < 0)
        for (int fd = 3; fd < 4096; fd++)
            if (fd != errpipe)
                fcntl(fd, F_SETFD, FD_CLOEXEC);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int sig = 1; sig < NSIG; sig++)
        sigaction(sig, &dfl, NULL);
    execve(path, argv, envp);
fail:
    e = errno;
    if (write(errpipe, &e, sizeof(e)) < 0) {
        /* nothing left to tell */
    }
    _exit(127);
}

static void proc_destroy(struct cg_harness_proc *p)
{
    if (p->stdin_fd >= 0)
        close(p->stdin_fd);
    if (p->out_fd >= 0)
        close(p->out_fd);
    if (p->out_file)
        fclose(p->out_file);
    if (p->pidfd >= 0)
        close(p->pidfd);
    for (size_t i = 0; i < p->nlines; i++)
        free(p->lines[i]);
    free(p->lines);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
    free(p->name);
    free(p->stdout_path);
    free(p->stderr_path);
    free(p->first_line);
    free(p);
}

/* The last non-empty line of a file, for error messages. */
static void last_line(const char *path, char *buf, size_t bufsz)
{
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;

    cg_strlcpy(buf, "(no stderr)", bufsz);
    if (!f)
        return;
    while ((n = getline(&line, &cap, f)) >= 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (n > 0)
            cg_strlcpy(buf, line, bufsz);
    }
    free(line);
    fclose(f);
}

struct cg_harness_proc *
cg_harness_proc_start(const char *const *argv,
                      const struct cg_harness_proc_opts *opts, char *errbuf,
                      size_t errsz)
{
    static const struct cg_harness_proc_opts defaults = { 0 };
    struct cg_harness_proc *p = NULL;
    char *path = NULL;
    char **envp = NULL;
    int out[2] = { -1, -1 }, ep[2] = { -1, -1 };
    int in_child = -1, err_fd = -1, in_parent = -1;
    const char *base;
    pthread_condattr_t ca;
    char line[CG_HARNESS_LINE_MAX];
    ssize_t r;
    int e = 0;
    unsigned seq;

    if (!opts)
        opts = &defaults;
    if (!argv || !argv[0]) {
        cg_err_set(errbuf, errsz, CG_EINVAL, "no program to start");
        return NULL;
    }
    base = strrchr(argv[0], '/');
    base = base ? base + 1 : argv[0];

    p = cg_calloc(1, sizeof(*p));
    p->pidfd = p->stdin_fd = p->out_fd = -1;
    p->name = cg_strdup(opts->name ? opts->name : base);
    pthread_mutex_init(&p->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cond, &ca);
    pthread_condattr_destroy(&ca);

    pthread_mutex_lock(&harness.lock);
    seq = ++harness.seq;
    pthread_mutex_unlock(&harness.lock);
    p->stdout_path =
        cg_asprintf("%s/%s-%u.stdout", cg_harness_dir(), p->name, seq);
    p->stderr_path =
        cg_asprintf("%s/%s-%u.stderr", cg_harness_dir(), p->name, seq);

    path = resolve_path(argv[0]);
    if (!path) {
        cg_err_set(errbuf, errsz, CG_ENOTFOUND, "%s: not found in PATH",
                   argv[0]);
        goto fail;
    }
    envp = build_env(opts->env);
    p->out_file = fopen(p->stdout_path, "we");
    err_fd =
        open(p->stderr_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (!p->out_file || err_fd < 0) {
        cg_err_set(errbuf, errsz, CG_EIO, "%s: %s", p->stderr_path,
                   strerror(errno));
        goto fail;
    }
    if (pipe2(out, O_CLOEXEC) < 0 || pipe2(ep, O_CLOEXEC) < 0) {
        cg_err_set(errbuf, errsz, CG_EIO, "pipe: %s", strerror(errno));
        goto fail;
    }
    if (opts->stdin_pipe) {
        int sp[2];
        if (pipe2(sp, O_CLOEXEC) < 0) {
            cg_err_set(errbuf, errsz, CG_EIO, "pipe: %s", strerror(errno));
            goto fail;
        }
        in_child = sp[0];
        in_parent = sp[1];
    } else {
        in_child = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    if (in_child < 0) {
        cg_err_set(errbuf, errsz, CG_EIO, "/dev/null: %s", strerror(errno));
        goto fail;
    }

    p->owner = getpid();
    p->pid = fork();
    if (p->pid < 0) {
        cg_err_set(errbuf, errsz, CG_EIO, "fork: %s", strerror(errno));
        goto fail;
    }
    if (p->pid == 0)
        child_exec(path, (char *const *)argv, envp, in_child, out[1], err_fd,
                   ep[1], p->owner);

    /* Also here, so that a kill to the group cannot race the child's own
     * setpgid. EACCES once it has exec'd is fine: it did it itself. */
    setpgid(p->pid, p->pid);
    close(out[1]);
    out[1] = -1;
    close(ep[1]);
    ep[1] = -1;
    close(in_child);
    in_child = -1;
    close(err_fd);
    err_fd = -1;
    p->out_fd = out[0];
    out[0] = -1;
    p->stdin_fd = in_parent;
    in_parent = -1;
    p->pidfd = (int)syscall(SYS_pidfd_open, p->pid, 0);
    harness_register(p);

    do
        r = read(ep[0], &e, sizeof(e));
    while (r < 0 && errno == EINTR);
    if (r > 0) {
        cg_err_set(errbuf, errsz, CG_EIO, "exec %s: %s", path, strerror(e));
        goto fail_started;
    }

    if (pthread_create(&p->reader, NULL, proc_reader, p) != 0) {
        cg_err_set(errbuf, errsz, CG_EIO, "%s: no reader thread", p->name);
        goto fail_started;
    }
    p->reader_running = true;

    if (opts->line_timeout_ms >= 0) {
        int timeout =
            opts->line_timeout_ms ? opts->line_timeout_ms : CG_HARNESS_START_MS;
        int rc = cg_harness_proc_read_line(p, line, sizeof(line), timeout);
        if (rc < 0) {
            char last[512];

            cg_harness_proc_stop(p, 1000);
            last_line(p->stderr_path, last, sizeof(last));
            cg_err_set(errbuf, errsz, rc,
                       "%s %s before printing a line; stderr: %s", p->name,
                       rc == CG_ETIMEOUT ? "stayed silent" : "exited", last);
            goto fail_started;
        }
        p->first_line = cg_strdup(line);
    } else {
        p->first_line = cg_strdup("");
    }
    close(ep[0]);
    free(path);
    free(envp);
    return p;

fail_started:
    close(ep[0]);
    ep[0] = -1;
    free(path);
    path = NULL;
    free(envp);
    envp = NULL;
    cg_harness_proc_free(p);
    return NULL;

fail:
    for (int i = 0; i < 2; i++) {
        if (out[i] >= 0)
            close(out[i]);
        if (ep[i] >= 0)
            close(ep[i]);
    }
    if (in_child >= 0)
        close(in_child);
    if (in_parent >= 0)
        close(in_parent);
    if (err_fd >= 0)
        close(err_fd);
    free(path);
    free(envp);
    proc_destroy(p);
    return NULL;
}

pid_t cg_harness_proc_pid(const struct cg_harness_proc *p)
{
    return p->pid;
}

const char *cg_harness_proc_first_line(const struct cg_harness_proc *p)
{
    return p->first_line;
}

int cg_harness_proc_stdin(const struct cg_harness_proc *p)
{
    return p->stdin_fd;
}

const char *cg_harness_proc_stdout_path(const struct cg_harness_proc *p)
{
    return p->stdout_path;
}

const char *cg_harness_proc_stderr_path(const struct cg_harness_proc *p)
{
    return p->stderr_path;
}

int cg_harness_proc_kill(struct cg_harness_proc *p, int sig)
{
    if (p->reaped)
        return CG_EINVAL;
    if (kill(-p->pid, sig) < 0 && kill(p->pid, sig) < 0)
        return CG_EIO;
    return 0;
}

/*
 * Waits for the child to exit without reaping it (waitid WNOWAIT), so that
 * its pid still names its process group while the stragglers in the group
 * get SIGKILL; then reaps it. The pid cannot be reused before that.
 */
int cg_harness_proc_wait(struct cg_harness_proc *p, int timeout_ms, int *status)
{
    int64_t deadline = cg_harness_now_ms() + timeout_ms;
    siginfo_t si;

    while (!p->reaped) {
        int64_t left;

        memset(&si, 0, sizeof(si));
        if (waitid(P_PID, (id_t)p->pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0) {
            if (errno == EINTR)
                continue;
            return CG_EIO;
        }
        if (si.si_pid == p->pid) {
            kill(-p->pid, SIGKILL);
            while (waitpid(p->pid, &p->status, 0) < 0 && errno == EINTR)
                ;
            p->reaped = true;
            break;
        }
        left = deadline - cg_harness_now_ms();
        if (timeout_ms >= 0 && left <= 0)
            return CG_ETIMEOUT;
        if (timeout_ms < 0)
            left = -1;
        if (p->pidfd >= 0) {
            struct pollfd pfd = { .fd = p->pidfd, .events = POLLIN };
            poll(&pfd, 1, (int)left);
        } else {
            poll(NULL, 0, left < 0 || left > 10 ? 10 : (int)left);
        }
    }
    if (status)
        *status = p->status;
    return 0;
}

bool cg_harness_proc_running(struct cg_harness_proc *p)
{
    return cg_harness_proc_wait(p, 0, NULL) == CG_ETIMEOUT;
}

int cg_harness_proc_stop(struct cg_harness_proc *p, int grace_ms)
{
    int status = 0, rc;

    if (!p->reaped) {
        kill(-p->pid, SIGTERM);
        rc = cg_harness_proc_wait(
            p, grace_ms ? grace_ms : CG_HARNESS_STOP_GRACE_MS, &status);
        if (rc == CG_ETIMEOUT) {
            kill(-p->pid, SIGKILL);
            rc = cg_harness_proc_wait(p, -1, &status);
        }
        if (rc < 0)
            return rc;
    }
    return p->status;
}

/* The reader ends when every writer of the pipe is gone; a grandchild that
 * left the group may still hold it, so give up on it after a bound. */
static void proc_join_reader(struct cg_harness_proc *p)
{
    struct timespec ts;

    if (!p->reader_running)
        return;
    deadline_ts(&ts, 2000);
    pthread_mutex_lock(&p->lock);
    while (!p->eof)
        if (pthread_cond_timedwait(&p->cond, &p->lock, &ts) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&p->lock);
    if (!p->eof)
        pthread_cancel(p->reader);
    pthread_join(p->reader, NULL);
    p->reader_running = false;
}

void cg_harness_proc_free(struct cg_harness_proc *p)
{
    if (!p)
        return;
    if (p->owner == getpid()) {
        cg_harness_proc_stop(p, 0);
        proc_join_reader(p);
    }
    harness_unregister(p);
    proc_destroy(p);
}

/*
 * Stops what the test left running: all children get SIGTERM at once and
 * share one grace period, then the rest get SIGKILL. A forked copy of the
 * test process inherits the list but not the children, hence the owner
 * check.
 */
static void harness_atexit(void)
{
    struct cg_harness_proc *mine[256];
    size_t n = 0;
    pid_t me = getpid();
    int64_t deadline = cg_harness_now_ms() + CG_HARNESS_STOP_GRACE_MS;

    pthread_mutex_lock(&harness.lock);
    for (struct cg_harness_proc *p = harness.head; p && n < 256; p = p->next)
        if (p->owner == me && !p->reaped)
            mine[n++] = p;
    pthread_mutex_unlock(&harness.lock);

    for (size_t i = 0; i < n; i++)
        kill(-mine[i]->pid, SIGTERM);
    for (size_t i = 0; i < n; i++) {
        int64_t left = deadline - cg_harness_now_ms();
        if (cg_harness_proc_wait(mine[i], left > 0 ? (int)left : 0, NULL) ==
            CG_ETIMEOUT) {
            kill(-mine[i]->pid, SIGKILL);
            cg_harness_proc_wait(mine[i], -1, NULL);
        }
    }
    if (harness.dir[0] && harness.dir_owner == me && !getenv("CG_HARNESS_KEEP"))
        nftw(harness.dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- redis-server ----------------------------------------------------- */

struct cg_harness_redis {
    int port;
    char *dir;
    struct cg_harness_proc *proc;
    bool tls;
    char *password;
    char *user;
    char *user_password;
    char *ca;         /* dir/ca.pem: what clients trust ("" when plain) */
    char *other_ca;   /* dir/other-ca.pem: a CA that signed nothing here */
    bool client_cert; /* TLS clients must show a certificate */
};

static int redis_client_cert(const struct cg_harness_redis *r,
                             struct cg_conf *conf, char *errbuf, size_t errsz)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/client.pem", r->dir);
    int rc = cg_conf_set(conf, "redis.tls_cert_file", path, errbuf, errsz);
    snprintf(path, sizeof(path), "%s/client.key", r->dir);
    return rc ? rc
              : cg_conf_set(conf, "redis.tls_key_file", path, errbuf, errsz);
}

/* Connects the way the programs do (redis.c's synchronous mode), as the
 * default user: the only way to reach a TLS-only server. */
static struct cg_redis *redis_open(const struct cg_harness_redis *r,
                                   bool as_user, char *errbuf, size_t errsz)
{
    struct cg_conf *conf = cg_conf_new();
    struct cg_redis *c = NULL;
    char port[16];
    snprintf(port, sizeof(port), "%d", r->port);
    if (cg_conf_set(conf, "redis.port", port, errbuf, errsz) == 0 &&
        cg_conf_set(conf, "redis.timeout_ms", "5000", errbuf, errsz) == 0 &&
        (!r->tls ||
         (cg_conf_set(conf, "redis.tls", "true", errbuf, errsz) == 0 &&
          cg_conf_set(conf, "redis.tls_ca_file", r->ca, errbuf, errsz) == 0)) &&
        (!r->client_cert || redis_client_cert(r, conf, errbuf, errsz) == 0) &&
        (!r->password ||
         cg_conf_set(conf, "redis.password",
                     as_user && r->user ? r->user_password : r->password,
                     errbuf, errsz) == 0) &&
        (!as_user || !r->user ||
         cg_conf_set(conf, "redis.username", r->user, errbuf, errsz) == 0))
        c = cg_redis_open(conf, errbuf, errsz);
    cg_conf_free(conf);
    return c;
}

static int redis_ping(const struct cg_harness_redis *r, char *errbuf,
                      size_t errsz)
{
    struct timeval tv = { .tv_sec = 5 };
    redisContext *c = NULL;
    redisReply *reply;
    int rc = 0;
    int port = r->port;

    if (r->tls || r->password) {
        struct cg_redis *rd = redis_open(r, false, errbuf, errsz);
        cg_redis_free(rd);
        return rd ? 0 : CG_EREDIS;
    }
    c = redisConnectWithTimeout("127.0.0.1", port, tv);

    if (!c || c->err) {
        rc = cg_err_set(errbuf, errsz, CG_EREDIS, "redis 127.0.0.1:%d: %s",
                        port, c ? c->errstr : "no memory");
        goto out;
    }
    reply = redisCommand(c, "PING");
    if (!reply || reply->type != REDIS_REPLY_STATUS ||
        strcmp(reply->str, "PONG") != 0)
        rc = cg_err_set(errbuf, errsz, CG_EREDIS,
                        "redis 127.0.0.1:%d did not answer PING", port);
    if (reply)
        freeReplyObject(reply);
out:
    if (c)
        redisFree(c);
    return rc;
}

/* Starts redis-server on r->port; CG_EIO when it exits before it is ready
 * (the port was taken), so the first start can try another port. */
static int redis_spawn(struct cg_harness_redis *r, char *errbuf, size_t errsz)
{
    const char *bin = getenv("CG_REDIS_SERVER");
    char port[16];
    const char *argv[] = { bin && *bin ? bin : CG_HARNESS_REDIS_SERVER,
                           "--port",
                           port,
                           "--bind",
                           "127.0.0.1",
                           "--save",
                           "",
                           "--appendonly",
                           "no",
                           "--dir",
                           r->dir,
                           "--logfile",
                           "",
                           "--daemonize",
                           "no",
                           NULL };
    /* Redis logs to stdout; its "Ready" line is the event to wait for. */
    const struct cg_harness_proc_opts opts = { .name = "redis",
                                               .line_timeout_ms = -1 };
    int rc;

    const char *targv[48];
    char *acl = NULL, cert[600], key[600];
    int n = 0;
    snprintf(port, sizeof(port), "%d", r->port);
    while (argv[n]) {
        targv[n] = argv[n];
        n++;
    }
    if (r->tls) {
        /* TLS only: no plaintext port, as Azure Cache for Redis by
         * default. Client certificates are asked for but optional. */
        snprintf(cert, sizeof(cert), "%s/server.pem", r->dir);
        snprintf(key, sizeof(key), "%s/server.key", r->dir);
        targv[2] = "0";
        targv[n++] = "--tls-port";
        targv[n++] = port;
        targv[n++] = "--tls-cert-file";
        targv[n++] = cert;
        targv[n++] = "--tls-key-file";
        targv[n++] = key;
        targv[n++] = "--tls-ca-cert-file";
        targv[n++] = r->ca;
        targv[n++] = "--tls-auth-clients";
        targv[n++] = r->client_cert ? "yes" : "optional";
    }
    if (r->password) {
        targv[n++] = "--requirepass";
        targv[n++] = r->password;
    }
    if (r->user) {
        /* Redis joins the words after --user into one ACL rule line. */
        acl = cg_asprintf(">%s", r->user_password);
        targv[n++] = "--user";
        targv[n++] = r->user;
        targv[n++] = "on";
        targv[n++] = acl;
        targv[n++] = "~*";
        targv[n++] = "&*";
        targv[n++] = "+@all";
    }
    targv[n] = NULL;
    r->proc = cg_harness_proc_start(targv, &opts, errbuf, errsz);
    free(acl);
    if (!r->proc)
        return CG_EIO;
    rc = cg_harness_proc_wait_for(r->proc, "Ready to accept connections",
                                  CG_HARNESS_START_MS);
    if (rc < 0) {
        char last[512];

        last_line(cg_harness_proc_stdout_path(r->proc), last, sizeof(last));
        cg_harness_proc_free(r->proc);
        r->proc = NULL;
        return cg_err_set(
            errbuf, errsz, rc, "redis-server on port %d %s: %s", r->port,
            rc == CG_ETIMEOUT ? "not ready in time" : "exited", last);
    }
    return redis_ping(r, errbuf, errsz);
}

/* Runs one openssl command to completion. */
static int run_openssl(const char *const *argv, char *errbuf, size_t errsz)
{
    const struct cg_harness_proc_opts opts = { .name = "openssl",
                                               .line_timeout_ms = -1 };
    struct cg_harness_proc *p =
        cg_harness_proc_start(argv, &opts, errbuf, errsz);
    int status = -1, rc;
    if (!p)
        return CG_EIO;
    rc = cg_harness_proc_wait(p, 60000, &status);
    cg_harness_proc_free(p);
    if (rc < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return cg_err_set(errbuf, errsz, CG_EIO, "openssl %s %s failed",
                          argv[1], argv[2]);
    return 0;
}

/*
 * A CA made for this run (dir/ca.pem), the server certificate it signs
 * for localhost and 127.0.0.1 (dir/server.pem, dir/server.key), a second
 * CA that signed nothing (dir/other-ca.pem), and when asked a client
 * certificate (dir/client.pem, dir/client.key). P-256 keys: quick.
 */
static int redis_make_certs(struct cg_harness_redis *r, char *errbuf,
                            size_t errsz)
{
    char cakey[600], csr[600], srv[600], srvkey[600], ext[600], okey[600];
    snprintf(cakey, sizeof(cakey), "%s/ca.key", r->dir);
    snprintf(csr, sizeof(csr), "%s/server.csr", r->dir);
    snprintf(srv, sizeof(srv), "%s/server.pem", r->dir);
    snprintf(srvkey, sizeof(srvkey), "%s/server.key", r->dir);
    snprintf(ext, sizeof(ext), "%s/server.ext", r->dir);
    snprintf(okey, sizeof(okey), "%s/other-ca.key", r->dir);
    FILE *f = fopen(ext, "w");
    if (!f)
        return cg_err_set(errbuf, errsz, CG_EIO, "%s: %s", ext,
                          strerror(errno));
    fputs("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
          "extendedKeyUsage=serverAuth\n",
          f);
    fclose(f);
    const char *ca[] = { "openssl",
                         "req",
                         "-x509",
                         "-newkey",
                         "ec",
                         "-pkeyopt",
                         "ec_paramgen_curve:P-256",
                         "-nodes",
                         "-keyout",
                         cakey,
                         "-out",
                         r->ca,
                         "-days",
                         "2",
                         "-subj",
                         "/CN=contactguard test redis CA",
                         NULL };
    const char *other[] = { "openssl",
                            "req",
                            "-x509",
                            "-newkey",
                            "ec",
                            "-pkeyopt",
                            "ec_paramgen_curve:P-256",
                            "-nodes",
                            "-keyout",
                            okey,
                            "-out",
                            r->other_ca,
                            "-days",
                            "2",
                            "-subj",
                            "/CN=contactguard other CA",
                            NULL };
    const char *req[] = { "openssl",
                          "req",
                          "-newkey",
                          "ec",
                          "-pkeyopt",
                          "ec_paramgen_curve:P-256",
                          "-nodes",
                          "-keyout",
                          srvkey,
                          "-out",
                          csr,
                          "-subj",
                          "/CN=localhost",
                          NULL };
    const char *sign[] = {
        "openssl", "x509", "-req",   "-in", csr,
        "-CA",     r->ca,  "-CAkey", cakey, "-CAcreateserial",
        "-out",    srv,    "-days",  "2",   "-extfile",
        ext,       NULL
    };
    char ccsr[600], ccert[600], ckey[600];
    snprintf(ccsr, sizeof(ccsr), "%s/client.csr", r->dir);
    snprintf(ccert, sizeof(ccert), "%s/client.pem", r->dir);
    snprintf(ckey, sizeof(ckey), "%s/client.key", r->dir);
    const char *creq[] = { "openssl",
                           "req",
                           "-newkey",
                           "ec",
                           "-pkeyopt",
                           "ec_paramgen_curve:P-256",
                           "-nodes",
                           "-keyout",
                           ckey,
                           "-out",
                           ccsr,
                           "-subj",
                           "/CN=contactguard",
                           NULL };
    const char *csign[] = {
        "openssl", "x509", "-req",   "-in", ccsr,
        "-CA",     r->ca,  "-CAkey", cakey, "-CAcreateserial",
        "-out",    ccert,  "-days",  "2",   NULL
    };
    int rc = run_openssl(ca, errbuf, errsz);
    if (rc == 0)
        rc = run_openssl(other, errbuf, errsz);
    if (rc == 0)
        rc = run_openssl(req, errbuf, errsz);
    if (rc == 0)
        rc = run_openssl(sign, errbuf, errsz);
    if (rc == 0 && r->client_cert)
        rc = run_openssl(creq, errbuf, errsz);
    if (rc == 0 && r->client_cert)
        rc = run_openssl(csign, errbuf, errsz);
    return rc;
}

struct cg_harness_redis *cg_harness_redis_start(char *errbuf, size_t errsz)
{
    const struct cg_harness_redis_opts plain = { 0 };
    return cg_harness_redis_start_opts(&plain, errbuf, errsz);
}

struct cg_harness_redis *
cg_harness_redis_start_opts(const struct cg_harness_redis_opts *o, char *errbuf,
                            size_t errsz)
{
    struct cg_harness_redis *r = cg_calloc(1, sizeof(*r));
    int rc = CG_EIO;

    r->tls = o->tls || o->client_cert;
    r->client_cert = o->client_cert;
    r->password = o->password ? cg_strdup(o->password) : NULL;
    if (o->user && o->password) {
        r->user = cg_strdup(o->user);
        r->user_password =
            cg_strdup(o->user_password ? o->user_password : o->password);
    }
    r->ca = cg_strdup("");
    r->other_ca = cg_strdup("");

    for (int i = 0; i < HARNESS_REDIS_TRIES && rc == CG_EIO; i++) {
        r->port = cg_harness_free_port(errbuf, errsz);
        if (r->port < 0)
            break;
        free(r->dir);
        r->dir = cg_asprintf("%s/redis-%d", cg_harness_dir(), r->port);
        if (mkdir(r->dir, 0700) < 0 && errno != EEXIST) {
            cg_err_set(errbuf, errsz, CG_EIO, "mkdir %s: %s", r->dir,
                       strerror(errno));
            break;
        }
        if (r->tls) {
            free(r->ca);
            free(r->other_ca);
            r->ca = cg_asprintf("%s/ca.pem", r->dir);
            r->other_ca = cg_asprintf("%s/other-ca.pem", r->dir);
            if (redis_make_certs(r, errbuf, errsz)) {
                rc = CG_EIO;
                break;
            }
        }
        rc = redis_spawn(r, errbuf, errsz);
    }
    if (rc < 0) {
        cg_harness_redis_free(r);
        return NULL;
    }
    return r;
}

int cg_harness_redis_port(const struct cg_harness_redis *r)
{
    return r->port;
}

struct cg_harness_proc *cg_harness_redis_proc(struct cg_harness_redis *r)
{
    return r->proc;
}

int cg_harness_redis_stop(struct cg_harness_redis *r, char *errbuf,
                          size_t errsz)
{
    int rc;

    if (!r->proc)
        return 0;
    rc = cg_harness_proc_stop(r->proc, 0);
    cg_harness_proc_free(r->proc);
    r->proc = NULL;
    if (rc < 0)
        return cg_err_set(errbuf, errsz, rc, "redis-server did not stop");
    return 0;
}

int cg_harness_redis_restart(struct cg_harness_redis *r, char *errbuf,
                             size_t errsz)
{
    int rc = cg_harness_redis_stop(r, errbuf, errsz);

    if (rc < 0)
        return rc;
    return redis_spawn(r, errbuf, errsz);
}

const char *cg_harness_redis_ca(const struct cg_harness_redis *r)
{
    return r->ca;
}

const char *cg_harness_redis_other_ca(const struct cg_harness_redis *r)
{
    return r->other_ca;
}

const char *cg_harness_redis_dir(const struct cg_harness_redis *r)
{
    return r->dir;
}

void cg_harness_redis_client(const struct cg_harness_redis *r,
                             struct cg_harness_redis_client *out)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->set[out->nset++], sizeof(out->set[0]), "redis.port=%d",
             r->port);
    if (r->tls) {
        snprintf(out->set[out->nset++], sizeof(out->set[0]), "redis.tls=true");
        snprintf(out->set[out->nset++], sizeof(out->set[0]),
                 "redis.tls_ca_file=%s", r->ca);
    }
    if (r->client_cert) {
        snprintf(out->set[out->nset++], sizeof(out->set[0]),
                 "redis.tls_cert_file=%s/client.pem", r->dir);
        snprintf(out->set[out->nset++], sizeof(out->set[0]),
                 "redis.tls_key_file=%s/client.key", r->dir);
    }
    if (r->user)
        snprintf(out->set[out->nset++], sizeof(out->set[0]),
                 "redis.username=%s", r->user);
    if (r->password) {
        /* A secret: by environment, never on a command line. */
        snprintf(out->env, sizeof(out->env), "CONTACTGUARD_REDIS_PASSWORD=%s",
                 r->user ? r->user_password : r->password);
    }
    int n = 0;
    for (int i = 0; i < out->nset; i++) {
        out->argv[n++] = "--set";
        out->argv[n++] = out->set[i];
    }
    out->argv[n] = NULL;
    out->envp[0] = out->env[0] ? out->env : NULL;
    out->envp[1] = NULL;
}

int cg_harness_redis_conf(const struct cg_harness_redis *r,
                          struct cg_conf *conf, char *errbuf, size_t errsz)
{
    struct cg_harness_redis_client c;
    cg_harness_redis_client(r, &c);
    for (int i = 0; i < c.nset; i++) {
        char *eq = strchr(c.set[i], '=');
        *eq = '\0';
        if (cg_conf_set(conf, c.set[i], eq + 1, errbuf, errsz))
            return CG_ECONF;
    }
    if (r->password &&
        cg_conf_set(conf, "redis.password",
                    r->user ? r->user_password : r->password, errbuf, errsz))
        return CG_ECONF;
    return 0;
}

struct cg_redis *cg_harness_redis_admin(const struct cg_harness_redis *r,
                                        char *errbuf, size_t errsz)
{
    return redis_open(r, false, errbuf, errsz);
}

redisContext *cg_harness_redis_connect(const struct cg_harness_redis *r,
                                       char *errbuf, size_t errsz)
{
    struct timeval tv = { .tv_sec = 5 };
    if (r->tls) {
        cg_err_set(errbuf, errsz, CG_EINVAL,
                   "redis-server on port %d speaks TLS only: use "
                   "cg_harness_redis_admin",
                   r->port);
        return NULL;
    }
    redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);

    if (!c || c->err) {
        cg_err_set(errbuf, errsz, CG_EREDIS, "redis 127.0.0.1:%d: %s", r->port,
                   c ? c->errstr : "no memory");
        if (c)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    return c;
}

void cg_harness_redis_free(struct cg_harness_redis *r)
{
    if (!r)
        return;
    cg_harness_proc_free(r->proc);
    free(r->dir);
    free(r->password);
    free(r->user);
    free(r->user_password);
    free(r->ca);
    free(r->other_ca);
    free(r);
}

/* ---- contactguard-devbroker ------------------------------------------- */

struct cg_harness_devbroker {
    struct cg_harness_proc *proc;
    int ctl_fd;
    size_t rlen;
    char rbuf[CG_HARNESS_LINE_MAX];
};

struct cg_harness_devbroker *
cg_harness_devbroker_start(int brokers, int partitions,
                           const char *const *extra_args, char *errbuf,
                           size_t errsz)
{
    const char *bin = getenv("CG_DEVBROKER");
    const char *argv[64];
    char nb[16], np[16], line[CG_HARNESS_LINE_MAX];
    const struct cg_harness_proc_opts opts = { .name = "devbroker" };
    struct cg_harness_devbroker *h = cg_calloc(1, sizeof(*h));
    size_t n = 0;
    long port;
    char *end;
    int rc;

    h->ctl_fd = -1;
    snprintf(nb, sizeof(nb), "%d", brokers > 0 ? brokers : 1);
    snprintf(np, sizeof(np), "%d", partitions);
    argv[n++] = bin && *bin ? bin : CG_HARNESS_DEVBROKER;
    argv[n++] = "--brokers";
    argv[n++] = nb;
    if (partitions > 0) {
        argv[n++] = "--partitions";
        argv[n++] = np;
    }
    for (size_t i = 0; extra_args && extra_args[i]; i++) {
        if (n == sizeof(argv) / sizeof(argv[0]) - 1) {
            cg_err_set(errbuf, errsz, CG_EINVAL, "too many devbroker args");
            goto fail;
        }
        argv[n++] = extra_args[i];
    }
    argv[n] = NULL;

    h->proc = cg_harness_proc_start(argv, &opts, errbuf, errsz);
    if (!h->proc)
        goto fail;
    rc = cg_harness_proc_read_line(h->proc, line, sizeof(line),
                                   CG_HARNESS_START_MS);
    if (rc < 0 || strncmp(line, "control=127.0.0.1:", 18) != 0) {
        cg_err_set(errbuf, errsz, CG_EIO,
                   "devbroker did not print its control address");
        goto fail;
    }
    errno = 0;
    port = strtol(line + 18, &end, 10);
    if (errno || *end || port <= 0 || port > 65535) {
        cg_err_set(errbuf, errsz, CG_EPARSE, "devbroker: bad line %s", line);
        goto fail;
    }
    h->ctl_fd = tcp_connect((int)port);
    if (h->ctl_fd < 0) {
        cg_err_set(errbuf, errsz, CG_EIO, "devbroker control port %ld: %s",
                   port, strerror(errno));
        goto fail;
    }
    if (cg_harness_devbroker_cmd(h, "ping", line, sizeof(line)) < 0) {
        cg_err_set(errbuf, errsz, CG_EIO, "devbroker ping: %s", line);
        goto fail;
    }
    return h;

fail:
    cg_harness_devbroker_free(h);
    return NULL;
}

const char *cg_harness_devbroker_bootstrap(const struct cg_harness_devbroker *h)
{
    return cg_harness_proc_first_line(h->proc);
}

struct cg_harness_proc *
cg_harness_devbroker_proc(struct cg_harness_devbroker *h)
{
    return h->proc;
}

int cg_harness_devbroker_cmd(struct cg_harness_devbroker *h, const char *cmd,
                             char *reply, size_t replysz)
{
    int64_t deadline = cg_harness_now_ms() + HARNESS_CMD_TIMEOUT_MS;
    char *line = cg_asprintf("%s\n", cmd);
    size_t len = strlen(line), off = 0;
    char dummy[8];
    char *nl;
    int rc = 0;

    if (!reply) {
        reply = dummy;
        replysz = sizeof(dummy);
    }
    cg_strlcpy(reply, "", replysz);
    if (strchr(cmd, '\n')) {
        rc = CG_EINVAL;
        goto out;
    }
    while (off < len) {
        ssize_t w = send(h->ctl_fd, line + off, len - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            rc = CG_EIO;
            goto out;
        }
        off += (size_t)w;
    }
    while (!(nl = memchr(h->rbuf, '\n', h->rlen))) {
        struct pollfd pfd = { .fd = h->ctl_fd, .events = POLLIN };
        int64_t left = deadline - cg_harness_now_ms();
        ssize_t r;

        if (left <= 0 || h->rlen == sizeof(h->rbuf)) {
            rc = CG_ETIMEOUT;
            goto out;
        }
        if (poll(&pfd, 1, (int)left) <= 0)
            continue;
        r = read(h->ctl_fd, h->rbuf + h->rlen, sizeof(h->rbuf) - h->rlen);
        if (r <= 0) {
            rc = CG_EIO;
            goto out;
        }
        h->rlen += (size_t)r;
    }
    *nl = '\0';
    cg_strlcpy(reply, h->rbuf, replysz);
    rc = strncmp(h->rbuf, "ok", 2) == 0 ? 0 : CG_EINVAL;
    h->rlen -= (size_t)(nl + 1 - h->rbuf);
    memmove(h->rbuf, nl + 1, h->rlen);
out:
    free(line);
    return rc;
}

void cg_harness_devbroker_free(struct cg_harness_devbroker *h)
{
    if (!h)
        return;
    if (h->ctl_fd >= 0)
        close(h->ctl_fd);
    cg_harness_proc_free(h->proc);
    free(h);
}

/* ---- Kafka clients for assertions ------------------------------------- */

typedef void (*dr_cb)(rd_kafka_t *rk, const rd_kafka_message_t *m,
                      void *opaque);

/* A client with the harness's settings plus kv ("name", "value" pairs,
 * NULL-terminated) and, for producers, a delivery callback. */
static rd_kafka_t *kafka_new(rd_kafka_type_t type, const char *bootstrap,
                             const char *const *kv, dr_cb dr, void *opaque,
                             char *errbuf, size_t errsz)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char kerr[512];
    rd_kafka_t *rk;

    if (dr)
        rd_kafka_conf_set_dr_msg_cb(conf, dr);
    rd_kafka_conf_set_opaque(conf, opaque);

    if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, kerr,
                          sizeof(kerr)) != RD_KAFKA_CONF_OK)
        goto fail;
    /* The test log is for the test's own lines; client chatter about a
     * broker the test took down on purpose would only hide them. */
    if (rd_kafka_conf_set(conf, "log_level", "3", kerr, sizeof(kerr)) !=
        RD_KAFKA_CONF_OK)
        goto fail;
    for (size_t i = 0; kv && kv[i]; i += 2)
        if (rd_kafka_conf_set(conf, kv[i], kv[i + 1], kerr, sizeof(kerr)) !=
            RD_KAFKA_CONF_OK)
            goto fail;
    rk = rd_kafka_new(type, conf, kerr, sizeof(kerr));
    if (rk)
        return rk;
    cg_err_set(errbuf, errsz, CG_EKAFKA, "kafka client: %s", kerr);
    return NULL;
fail:
    rd_kafka_conf_destroy(conf);
    cg_err_set(errbuf, errsz, CG_EKAFKA, "kafka conf: %s", kerr);
    return NULL;
}

struct produce_state {
    size_t delivered;
    size_t failed;
    rd_kafka_resp_err_t first_err;
};

static void produce_dr(rd_kafka_t *rk, const rd_kafka_message_t *m,
                       void *opaque)
{
    struct produce_state *st = opaque;

    if (m->err) {
        if (!st->failed++)
            st->first_err = m->err;
    } else {
        st->delivered++;
    }
}

int cg_harness_kafka_produce(const char *bootstrap, const char *topic,
                             const struct cg_harness_msg *msgs, size_t n,
                             int timeout_ms, char *errbuf, size_t errsz)
{
    int64_t deadline = cg_harness_now_ms() + timeout_ms;
    char timeout[32];
    /* Tests send oversized poison on purpose: the limit of the broker
     * under test, not the client's default, should decide. */
    const char *kv[] = { "enable.idempotence",
                         "true",
                         "linger.ms",
                         "5",
                         "message.timeout.ms",
                         timeout,
                         "message.max.bytes",
                         "16777216",
                         NULL };
    struct produce_state st = { 0 };
    rd_kafka_t *rk;
    int rc = 0;

    snprintf(timeout, sizeof(timeout), "%d", timeout_ms);
    rk = kafka_new(RD_KAFKA_PRODUCER, bootstrap, kv, produce_dr, &st, errbuf,
                   errsz);
    if (!rk)
        return CG_EKAFKA;

    for (size_t i = 0; i < n; i++) {
        const struct cg_harness_msg *m = &msgs[i];
        rd_kafka_headers_t *hdrs = NULL;
        rd_kafka_resp_err_t err;

        if (m->nheaders > 0) {
            hdrs = rd_kafka_headers_new(m->nheaders);
            for (size_t k = 0; k < m->nheaders; k++)
                rd_kafka_header_add(
                    hdrs, m->headers[k].name, -1, m->headers[k].value,
                    m->headers[k].value ? (ssize_t)m->headers[k].value_len : 0);
        }
        for (;;) {
            err = rd_kafka_producev(
                rk, RD_KAFKA_V_TOPIC(topic),
                RD_KAFKA_V_PARTITION(m->partition >= 0 ? m->partition
                                                       : RD_KAFKA_PARTITION_UA),
                RD_KAFKA_V_KEY(m->key, m->key ? m->key_len : 0),
                RD_KAFKA_V_VALUE(m->value, m->value ? m->value_len : 0),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
            if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL ||
                cg_harness_now_ms() >= deadline)
                break;
            rd_kafka_poll(rk, 50);
        }
        if (err) {
            if (hdrs)
                rd_kafka_headers_destroy(hdrs);
            rc = cg_err_set(errbuf, errsz, CG_EKAFKA,
                            "produce to %s, message %zu: %s", topic, i,
                            rd_kafka_err2str(err));
            goto out;
        }
        rd_kafka_poll(rk, 0);
    }
    {
        int64_t left = deadline - cg_harness_now_ms();
        rd_kafka_flush(rk, left > 0 ? (int)left : 0);
    }
    if (st.failed)
        rc = cg_err_set(errbuf, errsz, CG_EKAFKA,
                        "%zu of %zu messages to %s failed, first: %s",
                        st.failed, n, topic, rd_kafka_err2str(st.first_err));
    else if (st.delivered < n)
        rc = cg_err_set(errbuf, errsz, CG_ETIMEOUT,
                        "%zu of %zu messages to %s delivered in %d ms",
                        st.delivered, n, topic, timeout_ms);
out:
    /* Undelivered messages are purged so destroy does not wait for them. */
    rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(rk, 0);
    rd_kafka_destroy(rk);
    return rc;
}

/*
 * Asks for every topic rather than for this one: the mock cluster creates a
 * topic that a Metadata request names, whatever the client's
 * allow.auto.create.topics says, and a test must be able to see that a
 * topic does not exist.
 */
static int topic_partitions(rd_kafka_t *rk, const char *topic, int timeout_ms,
                            char *errbuf, size_t errsz)
{
    int64_t deadline = cg_harness_now_ms() + timeout_ms;
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__TIMED_OUT;

    /* Metadata fails while a broker the test took down is still the one
     * asked; retry until the deadline. */
    for (;;) {
        const struct rd_kafka_metadata *md = NULL;
        int64_t left = deadline - cg_harness_now_ms();

        if (left <= 0)
            break;
        err = rd_kafka_metadata(rk, 1, NULL, &md, (int)left);
        if (!err) {
            int rc = CG_ENOTFOUND;

            err = RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
            for (int i = 0; i < md->topic_cnt; i++) {
                if (strcmp(md->topics[i].topic, topic) == 0) {
                    err = md->topics[i].err;
                    rc = md->topics[i].partition_cnt;
                }
            }
            rd_kafka_metadata_destroy(md);
            if (!err)
                return rc;
            if (err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
                break;
        }
        poll(NULL, 0, 50);
    }
    return cg_err_set(errbuf, errsz,
                      err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART
                          ? CG_ENOTFOUND
                          : CG_EKAFKA,
                      "metadata for %s: %s", topic, rd_kafka_err2str(err));
}

int cg_harness_kafka_partitions(const char *bootstrap, const char *topic,
                                int timeout_ms, char *errbuf, size_t errsz)
{
    rd_kafka_t *rk = kafka_new(RD_KAFKA_CONSUMER, bootstrap, NULL, NULL, NULL,
                               errbuf, errsz);
    int rc;

    if (!rk)
        return CG_EKAFKA;
    rc = topic_partitions(rk, topic, timeout_ms, errbuf, errsz);
    rd_kafka_destroy(rk);
    return rc;
}

int cg_harness_kafka_committed(const char *bootstrap, const char *group,
                               const char *topic, int timeout_ms, int64_t *sum,
                               char *errbuf, size_t errsz)
{
    const char *kv[] = { "group.id", group, NULL };
    rd_kafka_t *rk =
        kafka_new(RD_KAFKA_CONSUMER, bootstrap, kv, NULL, NULL, errbuf, errsz);
    rd_kafka_topic_partition_list_t *l = NULL;
    int64_t deadline = cg_harness_now_ms() + timeout_ms;
    int rc;

    if (!rk)
        return CG_EKAFKA;
    rc = topic_partitions(rk, topic, timeout_ms, errbuf, errsz);
    if (rc < 0)
        goto out;
    l = rd_kafka_topic_partition_list_new(rc);
    for (int p = 0; p < rc; p++)
        rd_kafka_topic_partition_list_add(l, topic, p);
    int64_t left = deadline - cg_harness_now_ms();
    rd_kafka_resp_err_t err =
        rd_kafka_committed(rk, l, left > 0 ? (int)left : 1);
    if (err) {
        rc = cg_err_set(errbuf, errsz,
                        err == RD_KAFKA_RESP_ERR__TIMED_OUT ? CG_ETIMEOUT
                                                            : CG_EKAFKA,
                        "committed %s: %s", topic, rd_kafka_err2str(err));
        goto out;
    }
    *sum = 0;
    for (int i = 0; i < l->cnt; i++)
        if (l->elems[i].offset > 0)
            *sum += l->elems[i].offset;
    rc = 0;
out:
    if (l)
        rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(rk);
    return rc;
}

static char *dup_bytes(const void *p, size_t n)
{
    char *s;

    if (!p)
        return NULL;
    s = cg_malloc(n + 1);
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

static void msgs_append(struct cg_harness_msgs *out,
                        const rd_kafka_message_t *m)
{
    struct cg_harness_msg *c;
    rd_kafka_headers_t *hdrs = NULL;

    if (out->n == out->cap) {
        out->cap = out->cap ? out->cap * 2 : 256;
        out->v = cg_realloc(out->v, out->cap * sizeof(*out->v));
    }
    c = &out->v[out->n++];
    memset(c, 0, sizeof(*c));
    c->key = dup_bytes(m->key, m->key_len);
    c->key_len = m->key_len;
    c->value = dup_bytes(m->payload, m->len);
    c->value_len = m->len;
    c->partition = m->partition;
    c->offset = m->offset;
    if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char *name;
        const void *val;
        size_t sz;

        for (size_t i = 0; c->nheaders < CG_HARNESS_MAX_HEADERS &&
                           !rd_kafka_header_get_all(hdrs, i, &name, &val, &sz);
             i++) {
            struct cg_harness_header *h = &c->headers[c->nheaders++];
            h->name = cg_strdup(name);
            h->value = dup_bytes(val, sz);
            h->value_len = sz;
        }
    }
}

int cg_harness_kafka_consume(const char *bootstrap, const char *topic,
                             size_t want, int timeout_ms,
                             struct cg_harness_msgs *out, char *errbuf,
                             size_t errsz)
{
    int64_t deadline = cg_harness_now_ms() + timeout_ms;
    unsigned serial;
    char group[64];
    const char *kv[] = { "group.id",
                         group,
                         "enable.auto.commit",
                         "false",
                         "enable.partition.eof",
                         "true",
                         "auto.offset.reset",
                         "earliest",
                         NULL };
    rd_kafka_topic_partition_list_t *parts = NULL;
    rd_kafka_t *rk;
    bool *at_end = NULL;
    size_t got = 0;
    int nparts, ended = 0;
    int rc = 0;

    /* Unused by the broker (nothing is committed or subscribed), but
     * unique so two readers never share anything. */
    pthread_mutex_lock(&harness.lock);
    serial = ++harness.seq;
    pthread_mutex_unlock(&harness.lock);
    snprintf(group, sizeof(group), "cg-harness-%d-%u", (int)getpid(), serial);
    rk = kafka_new(RD_KAFKA_CONSUMER, bootstrap, kv, NULL, NULL, errbuf, errsz);
    if (!rk)
        return CG_EKAFKA;
    nparts = topic_partitions(rk, topic, timeout_ms, errbuf, errsz);
    if (nparts < 0) {
        rc = nparts;
        goto out;
    }
    parts = rd_kafka_topic_partition_list_new(nparts);
    for (int i = 0; i < nparts; i++)
        rd_kafka_topic_partition_list_add(parts, topic, i)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    if (rd_kafka_assign(rk, parts)) {
        rc = cg_err_set(errbuf, errsz, CG_EKAFKA, "assign %s failed", topic);
        goto out;
    }
    at_end = cg_calloc((size_t)nparts, sizeof(*at_end));

    while (got < want || ended < nparts) {
        int64_t left = deadline - cg_harness_now_ms();
        rd_kafka_message_t *m;

        if (left <= 0) {
            rc = cg_err_set(errbuf, errsz, CG_ETIMEOUT,
                            "%s: %zu messages (wanted %zu), %d of %d "
                            "partitions read to the end in %d ms",
                            topic, got, want, ended, nparts, timeout_ms);
            break;
        }
        m = rd_kafka_consumer_poll(rk, left < 100 ? (int)left : 100);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (m->partition >= 0 && m->partition < nparts &&
                !at_end[m->partition]) {
                at_end[m->partition] = true;
                ended++;
            }
        } else if (m->err) {
            /* Transient (a broker the test took down): keep reading. */
        } else {
            msgs_append(out, m);
            got++;
            if (m->partition >= 0 && m->partition < nparts &&
                at_end[m->partition]) {
                at_end[m->partition] = false;
                ended--;
            }
        }
        rd_kafka_message_destroy(m);
    }
out:
    if (parts)
        rd_kafka_topic_partition_list_destroy(parts);
    free(at_end);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return rc;
}

const char *cg_harness_msg_header(const struct cg_harness_msg *m,
                                  const char *name)
{
    for (size_t i = 0; i < m->nheaders; i++)
        if (strcmp(m->headers[i].name, name) == 0)
            return m->headers[i].value;
    return NULL;
}

void cg_harness_msgs_free(struct cg_harness_msgs *msgs)
{
    if (!msgs)
        return;
    for (size_t i = 0; i < msgs->n; i++) {
        struct cg_harness_msg *m = &msgs->v[i];
        free(m->key);
        free(m->value);
        for (size_t k = 0; k < m->nheaders; k++) {
            free(m->headers[k].name);
            free(m->headers[k].value);
        }
    }
    free(msgs->v);
    memset(msgs, 0, sizeof(*msgs));
}
