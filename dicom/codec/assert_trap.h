#ifndef PACSD_ASSERT_TRAP_H
#define PACSD_ASSERT_TRAP_H
#include <setjmp.h>
#include "j2k_shim.h"
// pacsd_trap_set makes a failed assertion on this thread longjmp to j
// (NULL: abort, as glibc does). pacsd_trap_message says which failed.
void pacsd_trap_set(jmp_buf *j);
const char *pacsd_trap_message(void);
#endif
