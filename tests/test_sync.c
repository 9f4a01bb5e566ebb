/* Tests: sync (to be written). */
#include "harness.h"
