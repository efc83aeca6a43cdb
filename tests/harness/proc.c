#include "proc.h"

#include "loop.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

int cg_proc_start(struct cg_proc *p, char *const argv[], int timeout_ms,
                  char *line, size_t linesz, char *errbuf, size_t errsz)
{
    int fds[2];
    p->pid = -1;
    p->out_fd = -1;
    if (pipe2(fds, O_CLOEXEC) != 0) {
        snprintf(errbuf, errsz, "pipe: %s", strerror(errno));
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(errbuf, errsz, "fork: %s", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        dup2(fds[1], STDOUT_FILENO);
        execv(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    p->pid = pid;
    p->out_fd = fds[0];
    size_t n = 0;
    int64_t deadline = cg_loop_now_ms() + timeout_ms;
    while (n + 1 < linesz) {
        int left = (int)(deadline - cg_loop_now_ms());
        struct pollfd pfd = { .fd = p->out_fd, .events = POLLIN };
        if (left <= 0 || poll(&pfd, 1, left) <= 0) {
            snprintf(errbuf, errsz, "%s printed no line within %d ms", argv[0],
                     timeout_ms);
            cg_proc_stop(p, 1000);
            return -1;
        }
        char ch;
        ssize_t r = read(p->out_fd, &ch, 1);
        if (r <= 0) {
            snprintf(errbuf, errsz, "%s exited before printing its address",
                     argv[0]);
            cg_proc_stop(p, 1000);
            return -1;
        }
        if (ch == '\n')
            break;
        line[n++] = ch;
    }
    line[n] = '\0';
    return 0;
}

int cg_proc_stop(struct cg_proc *p, int timeout_ms)
{
    if (p->pid <= 0)
        return -1;
    int status = -1;
    kill(p->pid, SIGTERM);
    int64_t deadline = cg_loop_now_ms() + timeout_ms;
    for (;;) {
        pid_t r = waitpid(p->pid, &status, WNOHANG);
        if (r == p->pid || (r < 0 && errno != EINTR))
            break;
        if (cg_loop_now_ms() >= deadline) {
            kill(-p->pid, SIGKILL);
            kill(p->pid, SIGKILL);
            waitpid(p->pid, &status, 0);
            break;
        }
        /* Polling the child's exit: there is no fd to wait on. */
        poll(NULL, 0, 10);
    }
    if (p->out_fd >= 0)
        close(p->out_fd);
    p->out_fd = -1;
    p->pid = -1;
    return status;
}
