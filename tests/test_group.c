/* Tests: group (to be written). */
#include "harness.h"
