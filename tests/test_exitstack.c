/* Tests: exitstack (to be written). */
#include "harness.h"
