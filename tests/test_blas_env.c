/* test_blas_env: the check that OpenBLAS's kernels fit the CPU, on the
 * core names OpenBLAS 0.3 reports (openblas_get_corename) and the CPUs
 * that decide it; and that this machine's own answer is consistent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cblas.h>
#include <cmocka.h>

#include "blas_env.h"

static void test_generic_kernels_on_an_avx2_cpu_fall_short(void **state)
{
    (void)state;
    char advice[32] = "";
    const blas_env_cpu avx2 = {1, 0}, avx512 = {1, 1};
    const char *slow[] = {"Prescott", "Core2", "Nehalem", "Sandybridge", "Barcelona",
                          "Piledriver", "Excavator", "unknown"};
    for (size_t i = 0; i < sizeof slow / sizeof *slow; i++) {
        assert_int_equal(blas_env_falls_short(slow[i], avx2, advice, sizeof advice), 1);
        assert_string_equal(advice, "Haswell");
        assert_int_equal(blas_env_falls_short(slow[i], avx512, advice, sizeof advice), 1);
        assert_string_equal(advice, "SkylakeX");
    }
}

static void test_fitting_kernels_or_an_older_cpu_do_not(void **state)
{
    (void)state;
    char advice[32] = "untouched";
    const blas_env_cpu avx2 = {1, 0}, avx512 = {1, 1}, sse = {0, 0};
    const char *fit[] = {"Haswell", "HASWELL", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids"};
    for (size_t i = 0; i < sizeof fit / sizeof *fit; i++) {
        assert_int_equal(blas_env_falls_short(fit[i], avx2, advice, sizeof advice), 0);
        assert_int_equal(blas_env_falls_short(fit[i], avx512, advice, sizeof advice), 0);
    }
    /* A CPU without AVX2 runs what it can: nothing better to suggest. */
    assert_int_equal(blas_env_falls_short("Prescott", sse, advice, sizeof advice), 0);
    assert_int_equal(blas_env_falls_short("Sandybridge", sse, advice, sizeof advice), 0);
    assert_int_equal(blas_env_falls_short(NULL, avx2, advice, sizeof advice), 0);
    assert_string_equal(advice, "untouched");
}

/* This process: the library's own core name and CPU (printed), and on a
 * CPU without AVX2 never a complaint. */
static void test_this_machine(void **state)
{
    (void)state;
    blas_env_cpu cpu = blas_env_this_cpu();
    const char *core = openblas_get_corename();
    assert_non_null(core);
    char advice[32];
    int short_ = blas_env_falls_short(core, cpu, advice, sizeof advice);
    print_message("OpenBLAS core %s, AVX2+FMA %d, AVX-512 %d: %s\n", core, cpu.avx2_fma,
                  cpu.avx512, short_ ? "falls short" : "fits");
    if (!cpu.avx2_fma)
        assert_int_equal(short_, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generic_kernels_on_an_avx2_cpu_fall_short),
        cmocka_unit_test(test_fitting_kernels_or_an_older_cpu_do_not),
        cmocka_unit_test(test_this_machine),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
