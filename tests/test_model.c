/* test_model: the network's forward pass against a naive double-precision
 * loop, its gradients against central finite differences, and spec parsing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "model.h"
#include "rng.h"

/* Fills the workspace with a random batch: pixels in [0,1), labels < classes. */
static void random_batch(const model_t *m, model_ws *ws, int batch, rng_t *rng)
{
    float *x = model_ws_input(ws);
    uint8_t *y = model_ws_labels(ws);
    for (size_t i = 0; i < (size_t)batch * m->input_size; i++)
        x[i] = (float)rng_uniform(rng);
    for (int r = 0; r < batch; r++)
        y[r] = (uint8_t)rng_below(rng, (uint32_t)m->num_classes);
}

static float *random_params(const model_t *m, rng_t *rng)
{
    float *w = calloc(m->num_params, sizeof *w);
    model_init_params(m, w, rng);
    /* Nonzero biases so their gradients are exercised away from 0. */
    for (int i = 0; i < m->num_layers; i++) {
        const model_layer *l = &m->layers[i];
        if (l->kind == LAYER_DENSE)
            for (size_t j = 0; j < l->out_size; j++)
                w[l->param_offset + l->in_size * l->out_size + j] =
                    (float)(0.2 * rng_uniform(rng) - 0.1);
    }
    return w;
}

/* Mean loss of the batch in double, as the finite differences see it. */
static double mean_loss(const model_t *m, const float *w, model_ws *ws, int batch)
{
    return model_forward(m, w, ws, batch, NULL) / batch;
}

/* Central differences with step h on `checks` parameters (all if 0),
 * against model_backward's gradient. Tolerance: |fd - g| <= abs_tol +
 * rel_tol * max(|fd|, |g|); the float32 forward pass limits fd's accuracy to
 * about 1e-7 * loss / h. */
static void check_gradient(const char *spec, int h_img, int w_img, int batch, size_t checks,
                           double h, double abs_tol, double rel_tol)
{
    char err[ERR_LEN];
    model_t m;
    assert_int_equal(model_build(&m, spec, h_img, w_img, 10, err), 0);
    rng_t rng;
    rng_init(&rng, 42, 7);
    model_ws *ws = model_ws_create(&m, batch);
    float *w = random_params(&m, &rng);
    float *grad = calloc(m.num_params, sizeof *grad);
    random_batch(&m, ws, batch, &rng);
    model_forward(&m, w, ws, batch, NULL);
    model_backward(&m, w, ws, batch, 1.0f, grad);

    size_t count = checks ? checks : m.num_params, bad = 0;
    for (size_t c = 0; c < count; c++) {
        size_t i = checks ? rng_below(&rng, (uint32_t)m.num_params) : c;
        float saved = w[i];
        w[i] = saved + (float)h;
        double up = mean_loss(&m, w, ws, batch);
        w[i] = saved - (float)h;
        double down = mean_loss(&m, w, ws, batch);
        w[i] = saved;
        double step = (double)(saved + (float)h) - (double)(saved - (float)h);
        double fd = (up - down) / step;
        double g = grad[i];
        if (fabs(fd - g) > abs_tol + rel_tol * fmax(fabs(fd), fabs(g))) {
            if (bad < 5)
                print_message("%s param %zu: fd %.6g backward %.6g\n", spec, i, fd, g);
            bad++;
        }
    }
    /* ReLU kinks within h of a pre-activation can spoil a rare check. */
    assert_true(bad <= count / 200);
    free(w);
    free(grad);
    model_ws_free(ws);
}

static void test_gradient_dense_softmax_matches_finite_differences(void **state)
{
    (void)state;
    check_gradient("d10", 4, 4, 3, 0, 1e-2, 2e-4, 1e-2);
}

static void test_gradient_dense_relu_matches_finite_differences(void **state)
{
    (void)state;
    check_gradient("d12-relu,d10", 4, 4, 3, 0, 1e-2, 2e-4, 1e-2);
}

static void test_gradient_dense_tanh_matches_finite_differences(void **state)
{
    (void)state;
    check_gradient("d12-tanh,d8-tanh,d10", 4, 4, 3, 0, 1e-2, 2e-4, 1e-2);
}

static void test_gradient_paper_mlp_matches_finite_differences(void **state)
{
    (void)state;
    check_gradient("mlp", 28, 28, 4, 400, 1e-3, 3e-4, 2e-2);
}

static void test_gradient_single_example_path_matches_finite_differences(void **state)
{
    (void)state; /* batch 1 goes through sgemv/sger instead of sgemm */
    check_gradient("d12-relu,d10", 4, 4, 1, 0, 1e-2, 2e-4, 1e-2);
    check_gradient("d12-tanh,d10", 4, 4, 1, 0, 1e-2, 2e-4, 1e-2);
}

/* Forward pass against a naive loop in double: the probabilities of every
 * class agree to 1e-5 (float32 accumulation over 784 inputs). */
static void test_forward_matches_naive_loop(void **state)
{
    (void)state;
    char err[ERR_LEN];
    model_t m;
    assert_int_equal(model_build(&m, "d32-relu,d16-tanh,d10", 28, 28, 10, err), 0);
    rng_t rng;
    rng_init(&rng, 3, 1);
    for (int batch = 1; batch <= 33; batch += 16) {
        model_ws *ws = model_ws_create(&m, batch);
        float *w = random_params(&m, &rng);
        random_batch(&m, ws, batch, &rng);
        double loss = model_forward(&m, w, ws, batch, NULL);
        const float *probs = model_ws_probs(ws);
        double naive_loss = 0;
        for (int r = 0; r < batch; r++) {
            double a[1024], b[1024];
            size_t width = m.input_size;
            for (size_t i = 0; i < width; i++)
                a[i] = model_ws_input(ws)[(size_t)r * width + i];
            for (int li = 0; li < m.num_layers; li++) {
                const model_layer *l = &m.layers[li];
                if (l->kind == LAYER_DENSE) {
                    const float *W = w + l->param_offset, *B = W + l->in_size * l->out_size;
                    for (size_t o = 0; o < l->out_size; o++) {
                        double s = B[o];
                        for (size_t i = 0; i < l->in_size; i++)
                            s += (double)W[o * l->in_size + i] * a[i];
                        b[o] = s;
                    }
                    width = l->out_size;
                } else {
                    for (size_t i = 0; i < width; i++)
                        b[i] = l->kind == LAYER_RELU ? fmax(a[i], 0) : tanh(a[i]);
                }
                memcpy(a, b, width * sizeof *a);
            }
            double zmax = a[0], sum = 0;
            for (int c = 1; c < 10; c++)
                zmax = fmax(zmax, a[c]);
            for (int c = 0; c < 10; c++)
                sum += exp(a[c] - zmax);
            for (int c = 0; c < 10; c++)
                assert_float_equal(probs[r * 10 + c], exp(a[c] - zmax) / sum, 1e-5);
            naive_loss += log(sum) - (a[model_ws_labels(ws)[r]] - zmax);
        }
        assert_float_equal(loss, naive_loss, 1e-4 * batch);
        free(w);
        model_ws_free(ws);
    }
}

/* With out = params and alpha = -lr, backward is one SGD step: it equals
 * params - lr * gradient to within float rounding (1e-6 absolute). */
static void test_fused_step_equals_gradient_step(void **state)
{
    (void)state;
    char err[ERR_LEN];
    model_t m;
    assert_int_equal(model_build(&m, "mlp", 28, 28, 10, err), 0);
    rng_t rng;
    rng_init(&rng, 5, 1);
    model_ws *ws = model_ws_create(&m, 8);
    float *w = random_params(&m, &rng);
    float *grad = calloc(m.num_params, sizeof *grad);
    float *stepped = malloc(m.num_params * sizeof *stepped);
    random_batch(&m, ws, 8, &rng);
    model_forward(&m, w, ws, 8, NULL);
    model_backward(&m, w, ws, 8, 1.0f, grad);
    memcpy(stepped, w, m.num_params * sizeof *w);
    model_backward(&m, stepped, ws, 8, -0.5f, stepped);
    for (size_t i = 0; i < m.num_params; i++)
        assert_float_equal(stepped[i], w[i] - 0.5f * grad[i], 1e-6);
    free(w); free(grad); free(stepped);
    model_ws_free(ws);
}

static void test_forward_counts_correct_predictions(void **state)
{
    (void)state;
    char err[ERR_LEN];
    model_t m;
    assert_int_equal(model_build(&m, "d10", 2, 2, 10, err), 0);
    float *w = calloc(m.num_params, sizeof *w);
    /* Bias favours class 3 whatever the input. */
    w[m.layers[0].param_offset + 40 + 3] = 5.0f;
    model_ws *ws = model_ws_create(&m, 4);
    uint8_t *y = model_ws_labels(ws);
    y[0] = 3; y[1] = 3; y[2] = 1; y[3] = 3;
    int correct = 0;
    model_forward(&m, w, ws, 4, &correct);
    assert_int_equal(correct, 3);
    free(w);
    model_ws_free(ws);
}

static void test_specs_build_the_expected_networks(void **state)
{
    (void)state;
    char err[ERR_LEN];
    model_t m;
    assert_int_equal(model_build(&m, "mlp", 28, 28, 10, err), 0);
    assert_int_equal(m.num_params, 784 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10);
    assert_string_equal(m.spec, "d128-relu,d64-relu,d10");
    assert_int_equal(model_build(&m, "784-256-10", 28, 28, 10, err), 0);
    assert_int_equal(m.num_params, 784 * 256 + 256 + 256 * 10 + 10);
    assert_int_equal(model_build(&m, "d64-tanh,d10", 28, 28, 10, err), 0);
    assert_int_equal(m.num_layers, 3);
    assert_int_equal(m.layers[1].kind, LAYER_TANH);
    /* Views tile the flat buffer with no gap. */
    assert_int_equal(m.layers[2].param_offset, 784 * 64 + 64);
}

static void test_bad_specs_are_refused_with_a_reason(void **state)
{
    (void)state;
    char err[ERR_LEN];
    model_t m;
    const struct { const char *spec, *phrase; } cases[] = {
        {"", "empty"},
        {"784-256-9", "classes"},
        {"783-10", "input size"},
        {"784", "at least"},
        {"d0", "bad dense"},
        {"d10,relu", "must end"},
        {"d10,sigmoid", "unknown layer"},
        {"x5", "unknown layer"},
        {"d99999999", "bad dense"},
        {"d10,,d10", "empty"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err[0] = '\0';
        assert_int_equal(model_build(&m, cases[i].spec, 28, 28, 10, err), -1);
        if (!strstr(err, cases[i].phrase))
            fail_msg("spec '%s': message '%s' lacks '%s'", cases[i].spec, err, cases[i].phrase);
    }
}

static void test_init_is_deterministic_and_bounded(void **state)
{
    (void)state;
    char err[ERR_LEN];
    model_t m;
    assert_int_equal(model_build(&m, "mlp", 28, 28, 10, err), 0);
    float *a = malloc(m.num_params * sizeof *a), *b = malloc(m.num_params * sizeof *b);
    rng_t r1, r2;
    rng_init(&r1, 9, RNG_STREAM_INIT);
    rng_init(&r2, 9, RNG_STREAM_INIT);
    model_init_params(&m, a, &r1);
    model_init_params(&m, b, &r2);
    assert_memory_equal(a, b, m.num_params * sizeof *a);
    double limit = sqrt(6.0 / (784 + 128));
    for (size_t i = 0; i < 784 * 128; i++)
        assert_true(fabsf(a[i]) <= limit);
    free(a);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradient_dense_softmax_matches_finite_differences),
        cmocka_unit_test(test_gradient_dense_relu_matches_finite_differences),
        cmocka_unit_test(test_gradient_dense_tanh_matches_finite_differences),
        cmocka_unit_test(test_gradient_paper_mlp_matches_finite_differences),
        cmocka_unit_test(test_gradient_single_example_path_matches_finite_differences),
        cmocka_unit_test(test_forward_matches_naive_loop),
        cmocka_unit_test(test_fused_step_equals_gradient_step),
        cmocka_unit_test(test_forward_counts_correct_predictions),
        cmocka_unit_test(test_specs_build_the_expected_networks),
        cmocka_unit_test(test_bad_specs_are_refused_with_a_reason),
        cmocka_unit_test(test_init_is_deterministic_and_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
