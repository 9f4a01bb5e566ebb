/*
 * aw_shield_init: the shield as a block manager of the one convention
 * (aw_<what>_init(self) fills self, cannot fail, returns &self->mgr). A
 * shield has no deadline of its own: a bounded shielded cleanup nests a
 * deadline scope inside it. scope.c keeps the general constructor (a shield
 * with a deadline), internal now; fold this into scope.c when it is next
 * edited.
 */
#include "internal.h"

aw_mgr *aw_shield_init(aw_scope *s)
{
	return aw_shield(s, AW_NEVER);
}
