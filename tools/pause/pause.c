/* The kubelet node's pod sandbox ("pause") process: holds the pod's namespaces,
 * reaps orphans, exits on SIGINT/SIGTERM. Built statically by
 * operator/nassync_dev/image.py into a one-file image, because no registry is
 * reachable to pull registry.k8s.io/pause. */
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/wait.h>

static void die(int s) { (void)s; _exit(0); }
static void reap(int s) { (void)s; while (waitpid(-1, NULL, WNOHANG) > 0) {} }

int main(void) {
  struct sigaction a = {0};
  a.sa_handler = die;
  sigaction(SIGINT, &a, NULL);
  sigaction(SIGTERM, &a, NULL);
  a.sa_handler = reap;
  a.sa_flags = SA_NOCLDSTOP;
  sigaction(SIGCHLD, &a, NULL);
  for (;;) pause();
  return 1;
}
