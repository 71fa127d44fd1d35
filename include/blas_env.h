/* blas_env: whether OpenBLAS runs kernels below what this CPU can do.
 *
 * OpenBLAS built with DYNAMIC_ARCH (Debian's) picks its kernels from the
 * CPU's model number. A model it does not know (a newer CPU, or a VM that
 * hides the model) falls back to its generic Prescott (SSE3) kernels even
 * where the CPU has AVX2 and FMA: matrix products, most of training, then
 * run about 2-3x slower (measured, docs/DESIGN.md, BLAS kernels). The choice
 * is made when the library loads, before main, so dssgd can only say so;
 * OPENBLAS_CORETYPE in every rank's environment overrides it. */
#ifndef DSSGD_BLAS_ENV_H
#define DSSGD_BLAS_ENV_H

#include <stddef.h>

/* The CPU features that decide which kernels fit. */
typedef struct {
    int avx2_fma; /* AVX2 and FMA: OpenBLAS's Haswell kernels run */
    int avx512;   /* AVX-512F as well: its SkylakeX kernels run */
} blas_env_cpu;

/* This process's CPU (GCC's __builtin_cpu_supports). */
blas_env_cpu blas_env_this_cpu(void);

/* Whether kernels named `core` (openblas_get_corename()) fall short of
 * `cpu`: the CPU has AVX2 and FMA and the kernels are none of OpenBLAS's
 * AVX2 ones. If so, returns 1 and writes into advice the OPENBLAS_CORETYPE
 * value that fits (SkylakeX with AVX-512, else Haswell); else returns 0. */
int blas_env_falls_short(const char *core, blas_env_cpu cpu, char *advice, size_t len);

#endif
