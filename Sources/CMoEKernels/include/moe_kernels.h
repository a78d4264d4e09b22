/*
 * moe_kernels.h — the one public header of CMoEKernels.
 *
 * Conventions (see docs/architecture.md):
 *  - Row-major float32. Shapes use B batch, T sequence, C width, F expert hidden,
 *    E experts, K top-k, V vocabulary, H heads, D head size, N rows.
 *  - One op per pair of functions: moe_<op>_forward / moe_<op>_backward.
 *    Argument order: outputs, saved statistics, inputs, weights, sizes.
 *  - Backward functions ACCUMULATE (+=) into every gradient they are given;
 *    a NULL gradient pointer means "not needed" and is skipped.
 *  - No allocation inside kernels: scratch space is passed in by the caller,
 *    with a *_workspace_size query where one is needed.
 *  - A *_naive reference of each optimised kernel lives in the test-only target
 *    CMoEKernelsNaive (Tests/CMoEKernelsNaive); tests compare them.
 *  - Results are deterministic for a fixed thread count: fixed static schedules,
 *    no floating-point atomics, reductions in a fixed order.
 *
 * The family headers below hold the declarations; this header is the umbrella.
 */
#ifndef MOE_KERNELS_H
#define MOE_KERNELS_H

#include "moe_threads.h"
#include "moe_matmul.h"
#include "moe_gemm_bf16.h"
#include "moe_gemm_f32.h"
#include "moe_pointwise.h"
#include "moe_norm.h"
#include "moe_softmax.h"
#include "moe_embedding.h"
#include "moe_position.h"
#include "moe_attention.h"
#include "moe_router.h"
#include "moe_layout.h"
#include "moe_dispatch.h"
#include "moe_optim.h"
#include "moe_weights.h"

#endif
