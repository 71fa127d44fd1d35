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
 * about 1e-7 * loss / h. Where a max-pool switches or a ReLU crosses zero
 * within h, the loss has a kink and the central difference averages two
 * slopes; backward then equals one of the one-sided differences, which is
 * accepted (with twice the tolerance: their error is O(h), not O(h^2)). */
static void check_gradient_allowing(const char *spec, int c_img, int h_img, int w_img,
                                    int classes, int batch, size_t checks, double h,
                                    double abs_tol, double rel_tol, size_t allowed)
{
    char err[ERR_LEN];
    model_t m;
    if (model_build(&m, spec, c_img, h_img, w_img, classes, err))
        fail_msg("%s", err);
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
        double mid = mean_loss(&m, w, ws, batch);
        double step = (double)(saved + (float)h) - (double)(saved - (float)h);
        double fd = (up - down) / step;
        double fd_up = (up - mid) / ((double)(saved + (float)h) - saved);
        double fd_down = (mid - down) / (saved - (double)(saved - (float)h));
        double g = grad[i];
        double tol = abs_tol + rel_tol * fmax(fabs(fd), fabs(g));
        int kink = fabs(fd_up - fd_down) > 4 * tol;
        int one_sided = kink && (fabs(fd_up - g) <= 2 * tol || fabs(fd_down - g) <= 2 * tol);
        if (fabs(fd - g) > tol && !one_sided) {
            if (bad < 5)
                print_message("%s param %zu: fd %.6g backward %.6g\n", spec, i, fd, g);
            bad++;
        }
    }
    /* Two kinks within h of one parameter can still spoil a rare check. */
    if (bad)
        print_message("%s: %zu of %zu checks outside tolerance\n", spec, bad, count);
    assert_true(bad <= allowed);
    free(w);
    free(grad);
    model_ws_free(ws);
}

/* At most 0.5% of the checks may miss: two kinks within h of one parameter. */
static void check_gradient_shape(const char *spec, int c_img, int h_img, int w_img, int classes,
                                 int batch, size_t checks, double h, double abs_tol,
                                 double rel_tol)
{
    size_t count = checks;
    if (!count) {
        char err[ERR_LEN];
        model_t m;
        model_build(&m, spec, c_img, h_img, w_img, classes, err);
        count = m.num_params;
    }
    check_gradient_allowing(spec, c_img, h_img, w_img, classes, batch, checks, h, abs_tol,
                            rel_tol, count / 200);
}

/* The same on grey h_img x w_img images and 10 classes. */
static void check_gradient(const char *spec, int h_img, int w_img, int batch, size_t checks,
                           double h, double abs_tol, double rel_tol)
{
    check_gradient_shape(spec, 1, h_img, w_img, 10, batch, checks, h, abs_tol, rel_tol);
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

/* Under valgrind (DSSGD_TEST_SKIP_SLOW) the two sweeps over the paper's
 * networks take minutes; the small nets above exercise the same code. */
static int skip_slow(void)
{
    return getenv("DSSGD_TEST_SKIP_SLOW") != NULL;
}

static void test_gradient_paper_mlp_matches_finite_differences(void **state)
{
    (void)state;
    if (skip_slow()) {
        skip();
        return;
    }
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
    assert_int_equal(model_build(&m, "d32-relu,d16-tanh,d10", 1, 28, 28, 10, err), 0);
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
    assert_int_equal(model_build(&m, "mlp", 1, 28, 28, 10, err), 0);
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

/* Naive double-precision forward of any layer list for one example: direct
 * convolution, explicit pooling and padding loops. Returns the activations
 * of the last layer (the logits) in out. */
static void naive_forward(const model_t *m, const float *w, const float *img, double *out)
{
    static double a[65536], b[65536];
    for (size_t i = 0; i < m->input_size; i++)
        a[i] = img[i];
    for (int li = 0; li < m->num_layers; li++) {
        const model_layer *l = &m->layers[li];
        const float *W = w + l->param_offset;
        int ih = l->in_h, iw = l->in_w, oh = l->out_h, ow = l->out_w, k = l->k;
        switch (l->kind) {
        case LAYER_DENSE:
            for (size_t o = 0; o < l->out_size; o++) {
                double s = W[l->in_size * l->out_size + o];
                for (size_t i = 0; i < l->in_size; i++)
                    s += (double)W[o * l->in_size + i] * a[i];
                b[o] = s;
            }
            break;
        case LAYER_CONV:
            for (int o = 0; o < l->out_c; o++)
                for (int y = 0; y < oh; y++)
                    for (int x = 0; x < ow; x++) {
                        double s = W[(size_t)l->out_c * l->in_c * k * k + o];
                        for (int c = 0; c < l->in_c; c++)
                            for (int dy = 0; dy < k; dy++)
                                for (int dx = 0; dx < k; dx++)
                                    s += (double)W[((o * l->in_c + c) * k + dy) * k + dx] *
                                         a[(c * ih + y + dy) * iw + x + dx];
                        b[(o * oh + y) * ow + x] = s;
                    }
            break;
        case LAYER_POOL:
            for (int c = 0; c < l->in_c; c++)
                for (int y = 0; y < oh; y++)
                    for (int x = 0; x < ow; x++) {
                        double mx = -INFINITY;
                        for (int dy = 0; dy < k; dy++)
                            for (int dx = 0; dx < k; dx++)
                                mx = fmax(mx, a[(c * ih + y * k + dy) * iw + x * k + dx]);
                        b[(c * oh + y) * ow + x] = mx;
                    }
            break;
        case LAYER_PAD:
            for (size_t i = 0; i < l->out_size; i++)
                b[i] = 0;
            for (int c = 0; c < l->in_c; c++)
                for (int y = 0; y < ih; y++)
                    for (int x = 0; x < iw; x++)
                        b[(c * oh + y + k) * ow + x + k] = a[(c * ih + y) * iw + x];
            break;
        case LAYER_RELU:
        case LAYER_TANH:
            for (size_t i = 0; i < l->out_size; i++)
                b[i] = l->kind == LAYER_RELU ? fmax(a[i], 0) : tanh(a[i]);
            break;
        }
        memcpy(a, b, l->out_size * sizeof *a);
    }
    memcpy(out, a, (size_t)m->num_classes * sizeof *out);
}

/* conv2d, pooling and padding through im2col + sgemm agree with the direct
 * loops: class probabilities within 1e-5 (float32 sums of up to 2400
 * products), on grey and multi-channel, square and non-square images. The
 * first conv is also checked to span all C input channels (in_c = C and
 * out_c C k k weights), so the naive loop cannot agree by ignoring some. */
static void test_conv_forward_matches_direct_convolution(void **state)
{
    (void)state;
    const struct { const char *spec; int c, h, w, classes; } cases[] = {
        {"c3x4,d10", 1, 7, 7, 10},
        {"pad1,c3x3-tanh-p2,c2x5-relu,d10", 1, 9, 9, 10},
        {"cnn", 1, 28, 28, 10},
        {"c3x4,d10", 3, 7, 7, 10},
        {"pad1,c3x3-tanh-p2,c2x5-relu,d6", 3, 9, 9, 6},
        {"c2x3-relu-p2,c2x2,d4", 2, 6, 9, 4},  /* non-square: rows and columns apart */
        {"cnn", 3, 32, 32, 10},
    };
    for (size_t s = 0; s < sizeof cases / sizeof cases[0]; s++) {
        char err[ERR_LEN];
        model_t m;
        if (model_build(&m, cases[s].spec, cases[s].c, cases[s].h, cases[s].w, cases[s].classes,
                        err))
            fail_msg("%s", err);
        const model_layer *first = &m.layers[0];
        while (first->kind != LAYER_CONV)
            first++;
        assert_int_equal(first->in_c, cases[s].c);
        assert_int_equal(first->param_count,
                         (size_t)first->out_c * cases[s].c * first->k * first->k + first->out_c);
        rng_t rng;
        rng_init(&rng, 21, (uint64_t)s);
        int batch = 3, k = m.num_classes;
        model_ws *ws = model_ws_create(&m, batch);
        float *w = random_params(&m, &rng);
        random_batch(&m, ws, batch, &rng);
        model_forward(&m, w, ws, batch, NULL);
        const float *probs = model_ws_probs(ws);
        for (int r = 0; r < batch; r++) {
            double z[MODEL_MAX_CLASSES], zmax = -INFINITY, sum = 0;
            naive_forward(&m, w, model_ws_input(ws) + (size_t)r * m.input_size, z);
            for (int c = 0; c < k; c++)
                zmax = fmax(zmax, z[c]);
            for (int c = 0; c < k; c++)
                sum += exp(z[c] - zmax);
            for (int c = 0; c < k; c++)
                assert_float_equal(probs[r * k + c], exp(z[c] - zmax) / sum, 1e-5);
        }
        free(w);
        model_ws_free(ws);
    }
}

static void test_gradient_conv_pool_pad_matches_finite_differences(void **state)
{
    (void)state;
    check_gradient("pad1,c3x3-tanh-p2,c2x4-tanh,d10", 8, 8, 3, 0, 1e-3, 5e-4, 2e-2);
    check_gradient("c3x2-relu-p2,d10", 7, 7, 2, 0, 1e-3, 5e-4, 2e-2);
}

/* Convolutions over C > 1 input channels: the first conv's weight
 * gradient (im2col of a C-channel image), a later conv's input gradient
 * (col2im into C maps), padding (forward, and backward through a padding
 * between convs) and pooling per channel, on square and non-square images,
 * with classes other than 10. */
static void test_gradient_multichannel_conv_matches_finite_differences(void **state)
{
    (void)state;
    check_gradient_shape("c3x4-tanh-p2,d5", 3, 8, 8, 5, 3, 0, 1e-3, 5e-4, 2e-2);
    check_gradient_shape("pad1,c3x4-tanh,pad1,c3x3-tanh-p2,d5", 3, 8, 8, 5, 3, 0, 1e-3, 5e-4,
                         2e-2);
    check_gradient_shape("pad2,c3x3-relu-p2,c2x2-tanh,d7", 2, 5, 7, 7, 2, 0, 1e-3, 5e-4, 2e-2);
}

/* Dense layers on a 1 x 1 x D feature vector, with 3 and with 256 classes
 * (the most byte labels allow: label 255's softmax row is exercised). */
static void test_gradient_dense_on_vectors_matches_finite_differences(void **state)
{
    (void)state;
    check_gradient_shape("mlp", 1, 1, 20, 3, 4, 400, 1e-3, 3e-4, 2e-2);
    check_gradient_shape("20-12-3", 1, 1, 20, 3, 3, 0, 1e-2, 2e-4, 1e-2);
    check_gradient_shape("d8-tanh,d256", 1, 1, 6, 256, 3, 0, 1e-2, 2e-4, 1e-2);
}

/* Example r's own gradient, by the plain backward pass on a batch of one
 * (its mean loss is its loss), in double. */
static void one_example_gradient(const model_t *m, const float *w, model_ws *batch_ws, int r,
                                 model_ws *ws1, float *scratch, double *g)
{
    memcpy(model_ws_input(ws1), model_ws_input(batch_ws) + (size_t)r * m->input_size,
           m->input_size * sizeof(float));
    model_ws_labels(ws1)[0] = model_ws_labels(batch_ws)[r];
    model_forward(m, w, ws1, 1, NULL);
    memset(scratch, 0, m->num_params * sizeof *scratch);
    model_backward(m, w, ws1, 1, 1.0f, scratch);
    for (size_t i = 0; i < m->num_params; i++)
        g[i] = scratch[i];
}

/* On a batch of 5, model_example_sqnorms equals the squared norm of each
 * example's gradient computed alone, and model_backward_weighted equals
 * the weighted sum of those gradients (1e-4 relative, L2 over the whole
 * vector: float sums in a different order). Multi-channel convolutions
 * (the per-example GEMM over C k k columns), padding, pooling and dense
 * layers; and a dense net on a feature vector. */
static void test_example_norms_and_weights_match_one_example_at_a_time(void **state)
{
    (void)state;
    const struct { const char *spec; int c, h, w, classes; } cases[] = {
        {"pad1,c3x4-tanh,c3x3-tanh-p2,d6-relu,d5", 3, 8, 8, 5},
        {"c2x3-relu-p2,d4", 4, 5, 6, 4},
        {"d9-tanh,d3", 1, 1, 11, 3},
    };
    for (size_t s = 0; s < sizeof cases / sizeof cases[0]; s++) {
        char err[ERR_LEN];
        model_t m;
        if (model_build(&m, cases[s].spec, cases[s].c, cases[s].h, cases[s].w, cases[s].classes,
                        err))
            fail_msg("%s", err);
        enum { BATCH = 5 };
        size_t n = m.num_params;
        rng_t rng;
        rng_init(&rng, 77, (uint64_t)s);
        model_ws *ws = model_ws_create(&m, BATCH), *ws1 = model_ws_create(&m, 1);
        float *w = random_params(&m, &rng);
        float *scratch = malloc(n * sizeof *scratch), *got = calloc(n, sizeof *got);
        double *g = malloc(n * sizeof *g), *want = calloc(n, sizeof *want);
        float weight[BATCH];
        double sqnorm[BATCH];
        random_batch(&m, ws, BATCH, &rng);
        for (int r = 0; r < BATCH; r++)
            weight[r] = (float)(0.25 + rng_uniform(&rng));
        model_forward(&m, w, ws, BATCH, NULL);
        model_example_sqnorms(&m, w, ws, BATCH, sqnorm);
        model_backward_weighted(&m, w, ws, BATCH, weight, 1.0f, got);
        for (int r = 0; r < BATCH; r++) {
            one_example_gradient(&m, w, ws, r, ws1, scratch, g);
            double ref = 0;
            for (size_t i = 0; i < n; i++) {
                ref += g[i] * g[i];
                want[i] += weight[r] * g[i];
            }
            if (fabs(sqnorm[r] - ref) > 1e-4 * ref)
                fail_msg("%s example %d: sqnorm %.9g, alone %.9g", cases[s].spec, r, sqnorm[r],
                         ref);
        }
        double diff = 0, size = 0;
        for (size_t i = 0; i < n; i++) {
            diff += (got[i] - want[i]) * (got[i] - want[i]);
            size += want[i] * want[i];
        }
        if (sqrt(diff) > 1e-4 * sqrt(size))
            fail_msg("%s: weighted gradient off by %.3g of %.3g", cases[s].spec, sqrt(diff),
                     sqrt(size));
        free(w); free(scratch); free(got); free(g); free(want);
        model_ws_free(ws);
        model_ws_free(ws1);
    }
}

/* Convolutions over a batch run tile by tile (model.c, conv_tile: in the
 * paper's CNN 1 example a tile in the first convolution and 16 in the
 * second, 1 and 8 on 32 x 32 images; 4 and 8 in the small net here), so
 * these batches span several tiles and end in a part-filled one. Against each example run
 * alone (one tile of one example), on grey and colour images: the
 * probabilities (1e-6), the mean gradient, per-example norms and the
 * weighted gradient (1e-5 relative, L2 over the vector: the tiles' sums
 * are in another order); the fused step with out = params and a large
 * step equals params - 5 gradient (1e-6 relative), which fails if a later
 * tile's input gradient read weights an earlier tile had already changed;
 * and a second run on a fresh workspace gives the same bits. */
static void test_conv_tiles_match_one_example_at_a_time(void **state)
{
    (void)state;
    const struct { const char *spec; int c, h, w, classes, batch; } cases[] = {
        {"cnn", 1, 28, 28, 10, 37},
        {"cnn", 3, 32, 32, 10, 19},
        {"c3x4-tanh,c3x3-tanh-p2,d5", 3, 10, 10, 5, 19},
    };
    for (size_t s = 0; s < sizeof cases / sizeof cases[0]; s++) {
        /* Under valgrind (DSSGD_TEST_SKIP_SLOW) the paper's CNN one example
         * at a time takes minutes: the small net, several tiles with a
         * part-filled last one, stays. */
        if (skip_slow() && strcmp(cases[s].spec, "cnn") == 0)
            continue;
        char err[ERR_LEN];
        model_t m;
        if (model_build(&m, cases[s].spec, cases[s].c, cases[s].h, cases[s].w, cases[s].classes,
                        err))
            fail_msg("%s", err);
        int batch = cases[s].batch, k = m.num_classes;
        /* (unsigned): the batches are positive; a size_t from a signed int
         * would let the compiler imagine a negative one */
        size_t n = m.num_params, nb = (unsigned)batch, nprobs = nb * (unsigned)k;
        rng_t rng;
        rng_init(&rng, 31, (uint64_t)s);
        model_ws *ws = model_ws_create(&m, batch), *ws2 = model_ws_create(&m, batch),
                 *ws1 = model_ws_create(&m, 1);
        float *w = random_params(&m, &rng);
        float *grad = calloc(n, sizeof *grad), *grad2 = calloc(n, sizeof *grad2);
        float *scratch = malloc(n * sizeof *scratch), *weighted = calloc(n, sizeof *weighted);
        float *stepped = malloc(n * sizeof *stepped);
        float *probs = malloc(nprobs * sizeof *probs);
        double *g = malloc(n * sizeof *g), *mean = calloc(n, sizeof *mean),
               *want_w = calloc(n, sizeof *want_w), *sqnorm = malloc(batch * sizeof *sqnorm);
        float *weight = malloc(batch * sizeof *weight);
        random_batch(&m, ws, batch, &rng);
        for (int r = 0; r < batch; r++)
            weight[r] = (float)(0.25 + rng_uniform(&rng));
        memcpy(model_ws_input(ws2), model_ws_input(ws), nb * m.input_size * sizeof(float));
        memcpy(model_ws_labels(ws2), model_ws_labels(ws), nb);

        model_forward(&m, w, ws, batch, NULL);
        memcpy(probs, model_ws_probs(ws), nprobs * sizeof *probs);
        model_backward(&m, w, ws, batch, 1.0f, grad);
        model_example_sqnorms(&m, w, ws, batch, sqnorm);
        model_backward_weighted(&m, w, ws, batch, weight, 1.0f, weighted);
        for (int r = 0; r < batch; r++) {
            one_example_gradient(&m, w, ws, r, ws1, scratch, g); /* leaves r's probs in ws1 */
            for (int c = 0; c < k; c++)
                assert_float_equal(probs[(size_t)r * k + c], model_ws_probs(ws1)[c], 1e-6);
            double ref = 0;
            for (size_t i = 0; i < n; i++) {
                ref += g[i] * g[i];
                mean[i] += g[i] / batch;
                want_w[i] += weight[r] * g[i];
            }
            if (fabs(sqnorm[r] - ref) > 1e-5 * ref)
                fail_msg("%s example %d: sqnorm %.9g, alone %.9g", cases[s].spec, r, sqnorm[r],
                         ref);
        }
        const struct { const char *what; const float *got; const double *want; } sums[] = {
            {"mean gradient", grad, mean}, {"weighted gradient", weighted, want_w}};
        for (int j = 0; j < 2; j++) {
            double diff = 0, size = 0;
            for (size_t i = 0; i < n; i++) {
                diff += (sums[j].got[i] - sums[j].want[i]) * (sums[j].got[i] - sums[j].want[i]);
                size += sums[j].want[i] * sums[j].want[i];
            }
            if (sqrt(diff) > 1e-5 * sqrt(size))
                fail_msg("%s batch %d: %s off by %.3g of %.3g", cases[s].spec, batch,
                         sums[j].what, sqrt(diff), sqrt(size));
        }

        /* The fused step scales each tile's products by the step size
         * inside the GEMM, the gradient step scales their sum: the two
         * differ in float rounding of sums with cancellation, so the step
         * is compared as a vector (L2), as the sums above are. */
        memcpy(stepped, w, n * sizeof *w);
        model_backward(&m, stepped, ws, batch, -5.0f, stepped);
        double step_diff = 0, step_size = 0;
        for (size_t i = 0; i < n; i++) {
            double want = (double)w[i] - 5.0 * grad[i];
            step_diff += (stepped[i] - want) * (stepped[i] - want);
            step_size += 25.0 * grad[i] * grad[i];
        }
        if (sqrt(step_diff) > 1e-5 * sqrt(step_size))
            fail_msg("%s: fused step off the gradient step by %.3g of a step of %.3g",
                     cases[s].spec, sqrt(step_diff), sqrt(step_size));

        model_forward(&m, w, ws2, batch, NULL);
        assert_memory_equal(model_ws_probs(ws2), probs, nprobs * sizeof *probs);
        model_backward(&m, w, ws2, batch, 1.0f, grad2);
        assert_memory_equal(grad2, grad, n * sizeof *grad);

        free(w); free(grad); free(grad2); free(scratch); free(weighted); free(stepped);
        free(probs); free(g); free(mean); free(want_w); free(sqnorm); free(weight);
        model_ws_free(ws);
        model_ws_free(ws2);
        model_ws_free(ws1);
    }
}

static void test_gradient_paper_cnn_matches_finite_differences(void **state)
{
    (void)state;
    if (skip_slow()) {
        skip();
        return;
    }
    /* 96 maps under max-pooling: a step of h in one weight can switch
     * several windows at once, which no one-sided difference matches; allow
     * 1% (4 of 400). A wrong backward fails most checks, not a few. */
    check_gradient_allowing("cnn", 1, 28, 28, 10, 2, 400, 1e-3, 5e-4, 2e-2, 4);
}

/* A pooling window with two equal maxima passes its gradient to the first
 * one only (row-major), never to both. Conv 2x2 with weights (1, 0, 0, 0)
 * copies the image; pixels (0,0) and (0,1) tie at 0.5; their right-hand
 * neighbours are 0.5 and 0.1. dL/dw01 / dL/dw00 = right neighbour / 0.5 of
 * the chosen position: 1 for the first, 0.2 for the second, 0.6 for both. */
static void test_pool_tie_sends_gradient_to_the_first_maximum(void **state)
{
    (void)state;
    char err[ERR_LEN];
    model_t m;
    assert_int_equal(model_build(&m, "c2x1,p2,d10", 1, 3, 3, 10, err), 0);
    float *w = calloc(m.num_params, sizeof *w), *grad = calloc(m.num_params, sizeof *grad);
    w[0] = 1.0f; /* w00 of the conv; w01 = w10 = w11 = 0, bias 0 */
    const model_layer *d = &m.layers[2];
    for (int c = 0; c < 10; c++)
        w[d->param_offset + c] = 0.1f * (float)(c + 1); /* dense from the single pooled value */
    model_ws *ws = model_ws_create(&m, 1);
    const float img[9] = {0.5f, 0.5f, 0.1f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    memcpy(model_ws_input(ws), img, sizeof img);
    model_ws_labels(ws)[0] = 2;
    model_forward(&m, w, ws, 1, NULL);
    model_backward(&m, w, ws, 1, 1.0f, grad);
    assert_true(fabsf(grad[0]) > 1e-4f);
    assert_float_equal(grad[1] / grad[0], 1.0, 1e-6);
    free(w);
    free(grad);
    model_ws_free(ws);
}

static void test_forward_counts_correct_predictions(void **state)
{
    (void)state;
    char err[ERR_LEN];
    model_t m;
    assert_int_equal(model_build(&m, "d10", 1, 2, 2, 10, err), 0);
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
    assert_int_equal(model_build(&m, "mlp", 1, 28, 28, 10, err), 0);
    assert_int_equal(m.num_params, 784 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10);
    assert_string_equal(m.spec, "d128-relu,d64-relu,d10");
    assert_int_equal(model_build(&m, "784-256-10", 1, 28, 28, 10, err), 0);
    assert_int_equal(m.num_params, 784 * 256 + 256 + 256 * 10 + 10);
    assert_int_equal(model_build(&m, "cnn", 1, 28, 28, 10, err), 0);
    assert_int_equal(m.num_params, 105506); /* the paper's count */
    assert_string_equal(m.spec, "pad2,c5x32-tanh-p3,c5x64-tanh-p2,d200-tanh,d10");
    assert_int_equal(m.layers[3].out_h, 9); /* 28 / 3, floor */
    assert_int_equal(m.layers[6].out_size, 64 * 2 * 2);
    assert_int_equal(model_build(&m, "d64-tanh,d10", 1, 28, 28, 10, err), 0);
    assert_int_equal(m.num_layers, 3);
    assert_int_equal(m.layers[1].kind, LAYER_TANH);
    /* Views tile the flat buffer with no gap. */
    assert_int_equal(m.layers[2].param_offset, 784 * 64 + 64);
}

/* Specs on input shapes other than 1 x 28 x 28 and classes other than 10. */
static void test_specs_fit_any_input_shape(void **state)
{
    (void)state;
    char err[ERR_LEN];
    model_t m;
    /* "cnn" on 3 x 32 x 32: pad2 -> 36, c5 -> 32, p3 -> 10, c5 -> 6, p2 -> 3.
     * conv1 32 maps x (3 x 5 x 5) + 32 = 2,432; conv2 64 x (32 x 5 x 5) + 64
     * = 51,264; dense 200 x (64 x 3 x 3 = 576) + 200 = 115,400; dense 10 x
     * 200 + 10 = 2,010: 171,106 in all. */
    assert_int_equal(model_build(&m, "cnn", 3, 32, 32, 10, err), 0);
    assert_int_equal(m.num_params, 171106);
    assert_string_equal(m.spec, "pad2,c5x32-tanh-p3,c5x64-tanh-p2,d200-tanh,d10");
    assert_int_equal(m.layers[0].in_c, 3);
    assert_int_equal(m.layers[6].out_size, 64 * 3 * 3);
    /* The least image the cnn fits: 18 -> 22, 18, 6, 2, 1; and with 256
     * classes: 32 x 1 x 25 + 32, 51,264, 200 x 64 + 200, 256 x 200 + 256. */
    assert_int_equal(model_build(&m, "cnn", 1, 18, 18, 256, err), 0);
    assert_int_equal(m.num_params, 832 + 51264 + 13000 + 51456);
    assert_int_equal(m.layers[m.num_layers - 1].out_size, 256);
    assert_int_equal(model_build(&m, "cnn", 2, 18, 40, 3, err), 0); /* 1 x 4 after the last pool */
    assert_int_equal(m.layers[m.num_layers - 3].in_size, 64 * 1 * 4);
    /* "mlp" on a feature vector of 20 and 3 classes. */
    assert_int_equal(model_build(&m, "mlp", 1, 1, 20, 3, err), 0);
    assert_int_equal(m.num_params, 20 * 128 + 128 + 128 * 64 + 64 + 64 * 3 + 3);
    assert_string_equal(m.spec, "d128-relu,d64-relu,d3");
    /* The shorthand's first width is C*H*W. */
    assert_int_equal(model_build(&m, "3072-100-7", 3, 32, 32, 7, err), 0);
    assert_int_equal(m.num_params, 3072 * 100 + 100 + 100 * 7 + 7);
    assert_int_equal(model_build(&m, "20-2", 1, 1, 20, 2, err), 0);
    /* Layer specs on multi-channel images: conv weights span all channels. */
    assert_int_equal(model_build(&m, "c3x4-tanh-p2,d5", 3, 8, 8, 5, err), 0);
    assert_int_equal(m.num_params, 4 * 3 * 3 * 3 + 4 + 5 * (4 * 3 * 3) + 5);
}

/* Shapes a spec does not fit, and class counts outside 2..256, are refused
 * with the facts needed to fix them. */
static void test_bad_shapes_and_classes_are_refused_with_a_reason(void **state)
{
    (void)state;
    char err[ERR_LEN];
    model_t m;
    const struct { const char *spec; int c, h, w, classes; const char *phrase, *phrase2; } cases[] = {
        {"cnn", 3, 8, 8, 10, "at least 18 x 18 pixels", "3 x 8 x 8 (C x H x W)"},
        {"cnn", 1, 1, 20, 10, "at least 18 x 18 pixels", "1 x 1 x 20 (C x H x W)"},
        {"cnn", 1, 17, 17, 10, "at least 18 x 18 pixels", "1 x 17 x 17"},
        {"cnn", 1, 28, 17, 10, "at least 18 x 18 pixels", "1 x 28 x 17"},
        {"784-10", 3, 28, 28, 10, "input size 2352", "3 x 28 x 28"},
        {"3072-10", 3, 32, 32, 5, "number of classes 5", "last width 10"},
        {"d10", 1, 28, 28, 1, "1 classes", "2 to 256"},
        {"d257", 1, 28, 28, 257, "257 classes", "2 to 256"},
        {"mlp", 0, 28, 28, 10, "bad input shape", "0 x 28 x 28"},
        {"mlp", 65536, 65536, 65536, 10, "more than", "65536 x 65536 x 65536"},
        {"c5x4,d10", 3, 1, 20, 10, "kernel", "1x20"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err[0] = '\0';
        assert_int_equal(model_build(&m, cases[i].spec, cases[i].c, cases[i].h, cases[i].w,
                                     cases[i].classes, err), -1);
        if (!strstr(err, cases[i].phrase) || !strstr(err, cases[i].phrase2))
            fail_msg("spec '%s' on %d x %d x %d, %d classes: message '%s' lacks '%s' or '%s'",
                     cases[i].spec, cases[i].c, cases[i].h, cases[i].w, cases[i].classes, err,
                     cases[i].phrase, cases[i].phrase2);
    }
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
        {"c40x2,d10", "kernel"},
        {"p0,d10", "bad pool"},
        {"cx3,d10", "bad conv"},
        {"pad99,d10", "bad padding"},
        /* a separator at either end: both refused */
        {",d128-relu,d10", "empty"},
        {"d128-relu,d10,", "empty layer after the final ','"},
        {"d10-", "empty layer after the final '-'"},
        {"mlp,", "unknown layer 'mlp'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err[0] = '\0';
        assert_int_equal(model_build(&m, cases[i].spec, 1, 28, 28, 10, err), -1);
        if (!strstr(err, cases[i].phrase))
            fail_msg("spec '%s': message '%s' lacks '%s'", cases[i].spec, err, cases[i].phrase);
    }
}

static void test_init_is_deterministic_and_bounded(void **state)
{
    (void)state;
    char err[ERR_LEN];
    model_t m;
    assert_int_equal(model_build(&m, "mlp", 1, 28, 28, 10, err), 0);
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
        cmocka_unit_test(test_conv_forward_matches_direct_convolution),
        cmocka_unit_test(test_gradient_conv_pool_pad_matches_finite_differences),
        cmocka_unit_test(test_gradient_multichannel_conv_matches_finite_differences),
        cmocka_unit_test(test_gradient_dense_on_vectors_matches_finite_differences),
        cmocka_unit_test(test_example_norms_and_weights_match_one_example_at_a_time),
        cmocka_unit_test(test_conv_tiles_match_one_example_at_a_time),
        cmocka_unit_test(test_gradient_paper_cnn_matches_finite_differences),
        cmocka_unit_test(test_pool_tie_sends_gradient_to_the_first_maximum),
        cmocka_unit_test(test_forward_counts_correct_predictions),
        cmocka_unit_test(test_specs_build_the_expected_networks),
        cmocka_unit_test(test_specs_fit_any_input_shape),
        cmocka_unit_test(test_bad_shapes_and_classes_are_refused_with_a_reason),
        cmocka_unit_test(test_bad_specs_are_refused_with_a_reason),
        cmocka_unit_test(test_init_is_deterministic_and_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
