/* Tests: observe (to be written). */
#include "harness.h"
