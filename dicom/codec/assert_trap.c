// A failed assertion in a codec library aborts the process. OpenJPH 0.9,
// as Debian builds it, asserts on conditions that hostile code streams
// can bring about in its packet and code-block parsing, which no check
// made before calling it can rule out without decoding the code stream
// itself. This file defines glibc's __assert_fail, which every library
// that the program links calls through the dynamic linker, so that a
// failed assertion on a thread that is decoding inside a trap returns
// to the trap's caller with an error instead; elsewhere it does what
// glibc's does.
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include "assert_trap.h"

static __thread jmp_buf *trap;
static __thread char trap_msg[PACSD_MSG];

void pacsd_trap_set(jmp_buf *j) { trap = j; }

const char *pacsd_trap_message(void) { return trap_msg; }

__attribute__((noreturn)) void __assert_fail(const char *assertion, const char *file, unsigned int line, const char *function) {
	jmp_buf *j = trap;
	if (j != NULL) {
		trap = NULL;
		snprintf(trap_msg, sizeof trap_msg, "the decoder failed its own check %s (%s:%u)", assertion, file, line);
		longjmp(*j, 1);
	}
	fprintf(stderr, "%s:%u: %s: Assertion `%s' failed.\n", file, line, function ? function : "?", assertion);
	fflush(stderr);
	abort();
}
