/* blas_env: whether OpenBLAS runs kernels below what this CPU can do (see
 * blas_env.h). */
#include "blas_env.h"

#include <stdio.h>
#include <strings.h>

blas_env_cpu blas_env_this_cpu(void)
{
    __builtin_cpu_init();
    blas_env_cpu cpu = {
        .avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"),
        .avx512 = !!__builtin_cpu_supports("avx512f"),
    };
    return cpu;
}

int blas_env_falls_short(const char *core, blas_env_cpu cpu, char *advice, size_t len)
{
    /* OpenBLAS 0.3's x86-64 kernel sets that use AVX2 and FMA. */
    static const char *const fitting[] = {"Haswell", "Zen", "SkylakeX", "Cooperlake",
                                          "SapphireRapids"};
    if (!cpu.avx2_fma || !core)
        return 0;
    for (size_t i = 0; i < sizeof fitting / sizeof *fitting; i++)
        if (strcasecmp(core, fitting[i]) == 0)
            return 0;
    if (advice && len)
        snprintf(advice, len, "%s", cpu.avx512 ? "SkylakeX" : "Haswell");
    return 1;
}
