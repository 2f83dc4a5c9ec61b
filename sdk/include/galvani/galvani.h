// Everything a plugin author needs, in one include.
#pragma once

#include "galvani/error.h"
#include "galvani/evaluator.h"
#include "galvani/method.h"
#include "galvani/model.h"
#include "galvani/objective.h"
#include "galvani/options.h"
#include "galvani/passes.h"
#include "galvani/path.h"
#include "galvani/plugin.h"
#include "galvani/support.h"
#include "galvani/tap.h"
#include "galvani/tensor_io.h"
#include "galvani/version.h"
