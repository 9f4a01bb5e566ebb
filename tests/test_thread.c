/* Tests: thread (to be written). */
#include "harness.h"
