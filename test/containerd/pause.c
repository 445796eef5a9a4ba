/* The sandbox ("pause") image's only program: sleeps until a signal, exits 0 on SIGTERM or
 * SIGINT. Built with `gcc -static` by test/containerd/CMakeLists.txt, so the image needs no
 * libc. */
#include <signal.h>
#include <string.h>
#include <unistd.h>

static void Exit(int signal_number) {
  (void)signal_number;
  _exit(0);
}

int main(void) {
  struct sigaction action;
  memset(&action, 0, sizeof(action));
  action.sa_handler = Exit;
  sigaction(SIGTERM, &action, NULL);
  sigaction(SIGINT, &action, NULL);
  for (;;) pause();
  return 0;
}
