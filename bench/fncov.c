/* fncov: which functions of an executable run, in the order they first run.
 *
 * Usage: fncov ADDRS OUT -- PROGRAM ARGS...
 *   ADDRS: the image-relative start address (hex) of every function, one a line
 *          (`nm --defined-only PROGRAM`, text symbols); PROGRAM must be the file they
 *          come from.
 *   OUT:   written with the addresses that ran, in first-hit order.
 *
 * PROGRAM runs under ptrace with an int3 on the first byte of every function. The first
 * hit of each restores the byte, records the address and resumes; later calls run at
 * full speed. Threads and children are followed (the supervisor's vfork children run its
 * code until they exec) and detached at their exec. bench/order_symbols.py drives it to
 * build the link order of the hot functions (PERFORMANCE.md).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

static uint64_t *addrs; /* absolute, sorted */
static unsigned char *orig;
static unsigned char *done;
static size_t naddrs;
static FILE *out;
static uint64_t base;

static int cmp64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static long find(uint64_t a) {
    size_t lo = 0, hi = naddrs;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (addrs[mid] < a) lo = mid + 1;
        else hi = mid;
    }
    return (lo < naddrs && addrs[lo] == a) ? (long)lo : -1;
}

static uint64_t image_base(pid_t pid, const char *exe) {
    char path[64], line[4096], real[4096];
    if (!realpath(exe, real)) { perror("realpath"); exit(2); }
    snprintf(path, sizeof path, "/proc/%d/maps", pid);
    FILE *f = fopen(path, "r");
    if (!f) { perror("maps"); exit(2); }
    while (fgets(line, sizeof line, f)) {
        uint64_t lo, hi, off;
        char perms[8];
        int n = 0;
        if (sscanf(line, "%lx-%lx %7s %lx %*s %*s %n", &lo, &hi, perms, &off, &n) < 4) continue;
        char *name = line + n;
        name[strcspn(name, "\n")] = 0;
        if (off == 0 && strcmp(name, real) == 0) { fclose(f); return lo; }
    }
    fprintf(stderr, "fncov: %s not mapped in %d\n", real, pid);
    exit(2);
}

static void patch(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/mem", pid);
    int fd = open(path, O_RDWR);
    if (fd < 0) { perror("mem"); exit(2); }
    for (size_t i = 0; i < naddrs; i++) addrs[i] += base;
    uint64_t lo = addrs[0], hi = addrs[naddrs - 1] + 1;
    unsigned char *buf = malloc(hi - lo);
    if (pread(fd, buf, hi - lo, lo) != (ssize_t)(hi - lo)) { perror("pread"); exit(2); }
    for (size_t i = 0; i < naddrs; i++) {
        orig[i] = buf[addrs[i] - lo];
        buf[addrs[i] - lo] = 0xcc;
    }
    if (pwrite(fd, buf, hi - lo, lo) != (ssize_t)(hi - lo)) { perror("pwrite"); exit(2); }
    free(buf);
    close(fd);
}

static void restore(pid_t tid, long i) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/mem", tid);
    int fd = open(path, O_RDWR);
    if (fd < 0 || pwrite(fd, &orig[i], 1, addrs[i]) != 1) {
        fprintf(stderr, "fncov: restore in %d: %s\n", tid, strerror(errno));
        exit(2);
    }
    close(fd);
    done[i] = 1;
    fprintf(out, "%lx\n", addrs[i] - base);
}

int main(int argc, char **argv) {
    if (argc < 5 || strcmp(argv[3], "--") != 0) {
        fprintf(stderr, "usage: fncov ADDRS OUT -- PROGRAM ARGS...\n");
        return 2;
    }
    FILE *in = fopen(argv[1], "r");
    if (!in) { perror(argv[1]); return 2; }
    size_t cap = 1 << 16;
    addrs = malloc(cap * sizeof *addrs);
    uint64_t a;
    while (fscanf(in, "%lx", &a) == 1) {
        if (naddrs == cap) addrs = realloc(addrs, (cap *= 2) * sizeof *addrs);
        addrs[naddrs++] = a;
    }
    fclose(in);
    qsort(addrs, naddrs, sizeof *addrs, cmp64);
    size_t w = 0;
    for (size_t i = 0; i < naddrs; i++)
        if (w == 0 || addrs[i] != addrs[w - 1]) addrs[w++] = addrs[i];
    naddrs = w;
    orig = malloc(naddrs);
    done = calloc(naddrs, 1);
    out = fopen(argv[2], "w");
    if (!out || naddrs == 0) { perror(argv[2]); return 2; }

    pid_t root = fork();
    if (root == 0) {
        ptrace(PTRACE_TRACEME, 0, 0, 0);
        execv(argv[4], argv + 4);
        perror("execv");
        _exit(127);
    }
    int st;
    if (waitpid(root, &st, 0) != root || !WIFSTOPPED(st)) { fprintf(stderr, "fncov: no exec stop\n"); return 2; }
    ptrace(PTRACE_SETOPTIONS, root, 0,
           PTRACE_O_TRACECLONE | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK | PTRACE_O_TRACEEXEC |
               PTRACE_O_EXITKILL);
    base = image_base(root, argv[4]);
    patch(root);
    ptrace(PTRACE_CONT, root, 0, 0);
    /* The forwarded signals: the tracer itself passes SIGTERM/SIGINT on to the root. */
    signal(SIGINT, SIG_IGN);
    int root_status = 0;
    for (;;) {
        pid_t tid = waitpid(-1, &st, __WALL);
        if (tid < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (WIFEXITED(st) || WIFSIGNALED(st)) {
            if (tid == root) root_status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            continue;
        }
        if (!WIFSTOPPED(st)) continue;
        int sig = WSTOPSIG(st);
        int event = st >> 16;
        if (sig == SIGTRAP && event != 0) {
            if (event == PTRACE_EVENT_EXEC && tid != root) {
                ptrace(PTRACE_DETACH, tid, 0, 0);
                continue;
            }
            ptrace(PTRACE_CONT, tid, 0, 0);
            continue;
        }
        if (sig == SIGTRAP) {
            struct user_regs_struct regs;
            ptrace(PTRACE_GETREGS, tid, 0, &regs);
            long i = find(regs.rip - 1);
            if (i >= 0) {
                if (!done[i]) restore(tid, i);
                regs.rip -= 1;
                ptrace(PTRACE_SETREGS, tid, 0, &regs);
                ptrace(PTRACE_CONT, tid, 0, 0);
                continue;
            }
        }
        if (sig == SIGSTOP) {
            /* a new thread or child's initial stop */
            ptrace(PTRACE_CONT, tid, 0, 0);
            continue;
        }
        ptrace(PTRACE_CONT, tid, 0, sig);
    }
    fclose(out);
    size_t hit = 0;
    for (size_t i = 0; i < naddrs; i++) hit += done[i];
    fprintf(stderr, "fncov: %zu of %zu functions ran\n", hit, naddrs);
    return root_status;
}
