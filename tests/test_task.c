/* Tests: task (to be written). */
#include "harness.h"
