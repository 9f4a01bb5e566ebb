/* Tests: gen (to be written). */
#include "harness.h"
