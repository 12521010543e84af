/* libevent's event-config.h defines _GNU_SOURCE before it includes system headers; including
   them here first keeps their definitions identical to Swift's Glibc module (fd_set). */
#include <sys/types.h>
#include <sys/time.h>
#include <sys/select.h>
#include <stdio.h>
#include <stdint.h>
#include <event2/event.h>
