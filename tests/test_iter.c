/* Tests: iter (to be written). */
#include "harness.h"
