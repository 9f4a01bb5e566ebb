/* Tests: with (to be written). */
#include "harness.h"
