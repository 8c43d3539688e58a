/* The fallback sweep's work and nothing else: sleep 0.2 s, peek with waitid(WNOWAIT).
 * bench/idle_threads.py --floor runs it beside the daemon to measure what such a wakeup
 * costs on this machine. Argument: the number of ticks. */
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>

int main(int argc, char **argv) {
    int ticks = argc > 1 ? atoi(argv[1]) : 150;
    struct timespec period = {0, 200000000};
    siginfo_t info;
    for (int i = 0; i < ticks; i++) {
        nanosleep(&period, NULL);
        waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT);
    }
    return 0;
}
