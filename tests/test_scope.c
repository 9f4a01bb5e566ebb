/* Tests: scope (to be written). */
#include "harness.h"
