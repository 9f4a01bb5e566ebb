/* Tests: queue (to be written). */
#include "harness.h"
