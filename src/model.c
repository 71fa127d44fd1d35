/* model: layer list over a flat parameter buffer; batched forward and
 * backward through OpenBLAS (sgemm for batches, sgemv/sger for one example). */
#include "model.h"

#include <cblas.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

struct model_ws {
    int max_batch;
    float *input;              /* (max_batch, input_size) */
    uint8_t *labels;           /* (max_batch) */
    float *act[MODEL_MAX_LAYERS]; /* (max_batch, layer out_size): each layer's output (but
                                   * a convolution's that a tanh follows: conv_forward) */
    float *probs;              /* (max_batch, num_classes) softmax of the logits */
    float *delta_a, *delta_b;  /* (max_batch, largest layer size): backward ping-pong */
    float *col, *dcol;         /* (in_c k k, tile out_h out_w): one conv tile's patches */
    float *tmp;                /* (out_c, tile out_h out_w): a tile's output or delta, map-major */
    float *grad;               /* (out_c, in_c k k) then (out_c): a conv layer's gradient */
    uint32_t *argmax[MODEL_MAX_LAYERS]; /* (max_batch, out_size): where each pool max came from */
};

/* ---- building ---------------------------------------------------------- */

/* Values per example in the input or any layer's output: offsets and GEMM
 * dimensions stay well inside int. */
#define MODEL_MAX_VALUES ((size_t)1 << 26)
/* The smallest image side the paper's CNN fits (derived in model_build). */
#define CNN_MIN_SIDE 18

static int add_layer(model_t *m, model_layer_kind kind, int width, int k, char *err)
{
    if (m->num_layers == MODEL_MAX_LAYERS)
        return err_set(err, "model: more than %d layers", MODEL_MAX_LAYERS);
    model_layer *l = &m->layers[m->num_layers];
    memset(l, 0, sizeof *l);
    l->kind = kind;
    if (m->num_layers == 0) {
        l->in_c = m->input_c; l->in_h = m->input_h; l->in_w = m->input_w;
    } else {
        const model_layer *prev = &m->layers[m->num_layers - 1];
        l->in_c = prev->out_c; l->in_h = prev->out_h; l->in_w = prev->out_w;
    }
    l->in_size = (size_t)l->in_c * l->in_h * l->in_w;
    l->k = k;
    l->out_c = l->in_c; l->out_h = l->in_h; l->out_w = l->in_w;
    switch (kind) {
    case LAYER_DENSE:
        l->out_c = width; l->out_h = 1; l->out_w = 1;
        l->param_count = (size_t)width * l->in_size + (size_t)width;
        break;
    case LAYER_CONV:
        if (k > l->in_h || k > l->in_w)
            return err_set(err, "model: %dx%d kernel on a %dx%d input", k, k, l->in_h, l->in_w);
        l->out_c = width; l->out_h = l->in_h - k + 1; l->out_w = l->in_w - k + 1;
        l->param_count = (size_t)width * l->in_c * k * k + (size_t)width;
        break;
    case LAYER_POOL:
        if (k > l->in_h || k > l->in_w)
            return err_set(err, "model: pool window %d on a %dx%d input", k, l->in_h, l->in_w);
        l->out_h = l->in_h / k; l->out_w = l->in_w / k;
        break;
    case LAYER_PAD:
        l->out_h = l->in_h + 2 * k; l->out_w = l->in_w + 2 * k;
        break;
    default:
        break;
    }
    l->out_size = (size_t)l->out_c * l->out_h * l->out_w;
    if (l->out_size > MODEL_MAX_VALUES)
        return err_set(err, "model: a layer of %zu values per example is too large", l->out_size);
    l->param_offset = m->num_params;
    m->num_params += l->param_count;
    m->num_layers++;
    return 0;
}

/* Parses a positive integer of at most 7 digits; returns -1 if not one. */
static long parse_width(const char *s, size_t len)
{
    if (len == 0 || len > 7)
        return -1;
    long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v > 0 ? v : -1;
}

/* "784-256-10": numbers only, ReLU between dense layers. Rewritten into the
 * layer form; the widths are checked against m's input size and classes.
 * Returns 1 if spec has this form, 0 if not, -1 on error. */
static int mlp_shorthand(const char *spec, const model_t *m, char *out, char *err)
{
    for (const char *p = spec; *p; p++)
        if (!isdigit((unsigned char)*p) && *p != '-')
            return 0;
    long widths[MODEL_MAX_LAYERS];
    int count = 0;
    for (const char *p = spec; ; ) {
        const char *dash = strchr(p, '-');
        size_t len = dash ? (size_t)(dash - p) : strlen(p);
        long w = parse_width(p, len);
        if (w < 0)
            return err_set(err, "model '%s': '%.*s' is not a layer width", spec, (int)len, p);
        if (count == MODEL_MAX_LAYERS)
            return err_set(err, "model '%s': too many layers", spec);
        widths[count++] = w;
        if (!dash)
            break;
        p = dash + 1;
    }
    if (count < 2)
        return err_set(err, "model '%s': need at least input and output widths", spec);
    if ((size_t)widths[0] != m->input_size)
        return err_set(err, "model '%s': first width %ld must be the input size %zu "
                       "(C x H x W = %d x %d x %d)", spec, widths[0], m->input_size,
                       m->input_c, m->input_h, m->input_w);
    if (widths[count - 1] != m->num_classes)
        return err_set(err, "model '%s': last width %ld must be the number of classes %d",
                       spec, widths[count - 1], m->num_classes);
    out[0] = '\0';
    size_t used = 0;
    for (int i = 1; i < count; i++) {
        int n = snprintf(out + used, MODEL_SPEC_LEN - used, "%sd%ld%s", i > 1 ? "," : "",
                         widths[i], i < count - 1 ? "-relu" : "");
        if (n < 0 || (size_t)n >= MODEL_SPEC_LEN - used)
            return err_set(err, "model '%s': spec too long", spec);
        used += (size_t)n;
    }
    return 1;
}

int model_build(model_t *m, const char *spec, int input_c, int input_h, int input_w,
                int num_classes, char *err)
{
    memset(m, 0, sizeof *m);
    if (!spec || !*spec)
        return err_set(err, "model: empty spec");
    if (input_c <= 0 || input_h <= 0 || input_w <= 0)
        return err_set(err, "model: bad input shape %d x %d x %d (C x H x W, each > 0)",
                       input_c, input_h, input_w);
    /* The same bound as a layer's output (add_layer), checked before the
     * product can overflow: sizes then fit the int the BLAS calls take. */
    size_t ch = (size_t)input_c * (size_t)input_h;
    if (ch > MODEL_MAX_VALUES || ch * (size_t)input_w > MODEL_MAX_VALUES)
        return err_set(err, "model: input %d x %d x %d (C x H x W) has more than %zu values",
                       input_c, input_h, input_w, (size_t)MODEL_MAX_VALUES);
    if (num_classes < 2 || num_classes > MODEL_MAX_CLASSES)
        return err_set(err, "model: %d classes (want 2 to %d: labels are bytes)", num_classes,
                       MODEL_MAX_CLASSES);
    m->input_c = input_c;
    m->input_h = input_h;
    m->input_w = input_w;
    m->input_size = ch * (size_t)input_w;
    m->num_classes = num_classes;

    char layers[MODEL_SPEC_LEN];
    if (strcmp(spec, "mlp") == 0) {
        snprintf(layers, sizeof layers, "d128-relu,d64-relu,d%d", num_classes);
    } else if (strcmp(spec, "cnn") == 0) {
        /* The paper's layers on any image they fit; a side s goes
         * pad2 -> s + 4, c5 -> s, p3 -> floor(s / 3), c5 -> floor(s / 3) - 4,
         * p2 -> floor((floor(s / 3) - 4) / 2), which is >= 1 from s = 18. */
        if (input_h < CNN_MIN_SIDE || input_w < CNN_MIN_SIDE)
            return err_set(err, "model 'cnn': the paper's CNN needs images of at least %d x %d "
                           "pixels; the data is %d x %d x %d (C x H x W)%s", CNN_MIN_SIDE,
                           CNN_MIN_SIDE, input_c, input_h, input_w,
                           input_h == 1 ? ": feature vectors want mlp or dense layers" : "");
        snprintf(layers, sizeof layers, "pad2,c5x32-tanh-p3,c5x64-tanh-p2,d200-tanh,d%d",
                 num_classes);
    } else {
        int shorthand = mlp_shorthand(spec, m, layers, err);
        if (shorthand < 0)
            return -1;
        if (!shorthand) {
            if (strlen(spec) >= sizeof layers)
                return err_set(err, "model: spec longer than %d characters", MODEL_SPEC_LEN - 1);
            strcpy(layers, spec);
        }
    }

    /* Tokens are separated by ',' or '-'; grouping is only for readability. */
    for (const char *p = layers; *p; ) {
        size_t len = strcspn(p, ",-");
        char tok[32];
        if (len == 0 || len >= sizeof tok)
            return err_set(err, "model '%s': empty or overlong layer near '%s'", spec, p);
        memcpy(tok, p, len);
        tok[len] = '\0';
        int rc;
        const char *x = strchr(tok, 'x');
        if (strcmp(tok, "relu") == 0) {
            rc = add_layer(m, LAYER_RELU, 0, 0, err);
        } else if (strcmp(tok, "tanh") == 0) {
            rc = add_layer(m, LAYER_TANH, 0, 0, err);
        } else if (strncmp(tok, "pad", 3) == 0) {
            long k = parse_width(tok + 3, len - 3);
            if (k < 0 || k > 64)
                return err_set(err, "model '%s': bad padding '%s' (want padK, 0 < K <= 64)", spec, tok);
            rc = add_layer(m, LAYER_PAD, 0, (int)k, err);
        } else if (tok[0] == 'p') {
            long k = parse_width(tok + 1, len - 1);
            if (k < 0 || k > 64)
                return err_set(err, "model '%s': bad pool '%s' (want pK, 0 < K <= 64)", spec, tok);
            rc = add_layer(m, LAYER_POOL, 0, (int)k, err);
        } else if (tok[0] == 'c' && x) {
            long k = parse_width(tok + 1, (size_t)(x - tok - 1));
            long maps = parse_width(x + 1, strlen(x + 1));
            if (k < 0 || k > 64 || maps < 0 || maps > 65536)
                return err_set(err, "model '%s': bad conv '%s' (want cKxN: K x K kernel, N maps)",
                               spec, tok);
            rc = add_layer(m, LAYER_CONV, (int)maps, (int)k, err);
        } else if (tok[0] == 'd') {
            long w = parse_width(tok + 1, len - 1);
            if (w < 0)
                return err_set(err, "model '%s': bad dense layer '%s' (want dN, N > 0)", spec, tok);
            rc = add_layer(m, LAYER_DENSE, (int)w, 0, err);
        } else {
            return err_set(err, "model '%s': unknown layer '%s' (known: dN, cKxN, pK, padK, relu, "
                           "tanh)", spec, tok);
        }
        if (rc)
            return -1;
        p += len;
        /* A separator must have a layer after it, as one must have a layer
         * before it (the len == 0 test above). */
        if (*p && !*++p)
            return err_set(err, "model '%s': empty layer after the final '%c'", spec, p[-1]);
    }
    if (m->num_layers == 0)
        return err_set(err, "model '%s': no layers", spec);
    const model_layer *last = &m->layers[m->num_layers - 1];
    if (last->kind != LAYER_DENSE || last->out_size != (size_t)num_classes)
        return err_set(err, "model '%s': must end with a dense layer of %d outputs (d%d)", spec,
                       num_classes, num_classes);
    if (m->num_params > ((size_t)1 << 32) - 1)
        return err_set(err, "model '%s': %zu parameters exceed the 2^32-1 index limit", spec,
                       m->num_params);
    snprintf(m->spec, sizeof m->spec, "%s", layers);
    return 0;
}

void model_init_params(const model_t *m, float *params, rng_t *rng)
{
    for (int i = 0; i < m->num_layers; i++) {
        const model_layer *l = &m->layers[i];
        if (l->kind != LAYER_DENSE && l->kind != LAYER_CONV)
            continue;
        /* Glorot: fans are the inputs and outputs one weight connects. */
        size_t outs = (size_t)l->out_c, weights = l->param_count - outs;
        double fan_in = (double)weights / (double)outs;
        double fan_out = l->kind == LAYER_CONV ? (double)l->out_c * l->k * l->k : (double)outs;
        double limit = sqrt(6.0 / (fan_in + fan_out));
        float *w = params + l->param_offset;
        for (size_t j = 0; j < weights; j++)
            w[j] = (float)((2.0 * rng_uniform(rng) - 1.0) * limit);
        memset(w + weights, 0, outs * sizeof *w);
    }
}

/* Examples per tile of a convolution. A batch is convolved tile by tile:
 * a tile's patch matrix (in_c k k x tile out_h out_w floats) is formed,
 * multiplied and dropped while it is still in the L2 cache, where one
 * matrix for the whole batch (10 MB for the paper's CNN at batch 128) left
 * the caches between im2col and the GEMM. A tile is the fewest examples
 * whose GEMM is at least CONV_TILE_COLS columns wide (narrower ones ran up
 * to 30% slower in OpenBLAS) in whole blocks of 16 columns, within
 * CONV_TILE_FLOATS of patches (2 MiB, this machine's L2 per core): for the
 * paper's CNN 1 example in the first convolution (784 output pixels), 16
 * in the second (25). Whole blocks because OpenBLAS computes the last
 * N mod 4 columns of a GEMM by another path, with other roundings: in
 * whole blocks a column's sums do not depend on where a tile ends, and the
 * forward pass gives the same bits as one GEMM over the batch (when that
 * GEMM's width is a multiple of 4 too). The tile depends on the layer's
 * shape and the batch alone: a batch is split the same way on every run
 * and rank (same bits). */
#define CONV_TILE_COLS 256
#define CONV_TILE_FLOATS ((size_t)1 << 19)

static int conv_tile(const model_layer *l, int batch)
{
    size_t pixels = (size_t)l->out_h * l->out_w;
    size_t tile = (CONV_TILE_COLS + pixels - 1) / pixels;
    while (tile * pixels % 16) /* at most 15 steps */
        tile++;
    size_t fit = CONV_TILE_FLOATS / ((size_t)l->in_c * l->k * l->k * pixels);
    if (tile > fit)
        tile = fit;
    if (tile < 1)
        tile = 1;
    return tile < (size_t)batch ? (int)tile : batch;
}

/* ---- workspace --------------------------------------------------------- */

static float *alloc_floats(size_t count)
{
    /* 64-byte aligned and zeroed: same kernels, same bits, on every rank. */
    size_t bytes = (count * sizeof(float) + 63) & ~(size_t)63;
    float *p = aligned_alloc(64, bytes ? bytes : 64);
    if (p)
        memset(p, 0, bytes);
    return p;
}

model_ws *model_ws_create(const model_t *m, int max_batch)
{
    if (max_batch <= 0)
        return NULL;
    model_ws *ws = calloc(1, sizeof *ws);
    if (!ws)
        return NULL;
    ws->max_batch = max_batch;
    size_t widest = m->input_size;
    for (int i = 0; i < m->num_layers; i++) {
        if (m->layers[i].out_size > widest)
            widest = m->layers[i].out_size;
    }
    size_t b = (size_t)max_batch, col = 0, tmp = 0, grad = 0;
    for (int i = 0; i < m->num_layers; i++) {
        const model_layer *l = &m->layers[i];
        if (l->kind != LAYER_CONV)
            continue;
        size_t p = (size_t)l->out_h * l->out_w;
        if (b * p > (size_t)INT_MAX) { /* the header's limit: a tile's GEMM width is an int */
            model_ws_free(ws);
            return NULL;
        }
        size_t t = (size_t)conv_tile(l, max_batch);
        size_t k = (size_t)l->in_c * l->k * l->k * p * t;
        col = k > col ? k : col;
        tmp = (size_t)l->out_c * p * t > tmp ? (size_t)l->out_c * p * t : tmp;
        grad = l->param_count > grad ? l->param_count : grad;
    }
    ws->grad = alloc_floats(grad);
    ws->col = alloc_floats(col);
    ws->dcol = alloc_floats(col);
    ws->tmp = alloc_floats(tmp);
    ws->input = alloc_floats(b * m->input_size);
    ws->labels = calloc(b, 1);
    ws->probs = alloc_floats(b * (size_t)m->num_classes);
    ws->delta_a = alloc_floats(b * widest);
    ws->delta_b = alloc_floats(b * widest);
    int ok = ws->input && ws->labels && ws->probs && ws->delta_a && ws->delta_b;
    ok = ok && ws->col && ws->dcol && ws->tmp && ws->grad;
    for (int i = 0; i < m->num_layers && ok; i++) {
        ws->act[i] = alloc_floats(b * m->layers[i].out_size);
        ok = ws->act[i] != NULL;
        if (ok && m->layers[i].kind == LAYER_POOL) {
            ws->argmax[i] = calloc(b * m->layers[i].out_size, sizeof(uint32_t));
            ok = ws->argmax[i] != NULL;
        }
    }
    if (!ok) {
        model_ws_free(ws);
        return NULL;
    }
    return ws;
}

void model_ws_free(model_ws *ws)
{
    if (!ws)
        return;
    free(ws->input);
    free(ws->labels);
    free(ws->probs);
    free(ws->delta_a);
    free(ws->delta_b);
    for (int i = 0; i < MODEL_MAX_LAYERS; i++) {
        free(ws->act[i]);
        free(ws->argmax[i]);
    }
    free(ws->col);
    free(ws->dcol);
    free(ws->tmp);
    free(ws->grad);
    free(ws);
}

int model_ws_max_batch(const model_ws *ws) { return ws->max_batch; }
float *model_ws_input(model_ws *ws) { return ws->input; }
uint8_t *model_ws_labels(model_ws *ws) { return ws->labels; }
const float *model_ws_probs(const model_ws *ws) { return ws->probs; }

/* ---- activations ------------------------------------------------------- */

/* tanh without a libm call, so the loop over a layer vectorises (tanhf was
 * most of the CNN's time). tanh(x) = -m / (2 + m) with m = expm1(-2|x|),
 * the sign restored; expm1 by Cody-Waite reduction y = n ln2 + r and a
 * degree-7 polynomial for expm1(r), |r| <= ln2 / 2. Keeping expm1 (not exp)
 * keeps full relative precision near 0. Accurate to a few ulps. */
static inline float tanh_fast(float x)
{
    float ax = fabsf(x) < 9.0f ? fabsf(x) : 9.0f; /* tanh(9) rounds to 1 */
    float y = -2.0f * ax;
    float n = nearbyintf(y * 1.44269504f);
    float r = (y - n * 0.693359375f) + n * 2.12194440e-4f; /* ln2 split: hi exact */
    float q = r * (1.0f + r * (0.5f + r * (1.66666672e-1f + r * (4.16666716e-2f +
              r * (8.33333377e-3f + r * (1.38888892e-3f + r * 1.98412701e-4f))))));
    int32_t bits = (int32_t)(n + 127.0f) << 23; /* 2^n, n in [-26, 0] */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float m = scale * q + (scale - 1.0f); /* expm1(y) = 2^n (1 + q) - 1 */
    float t = -m / (2.0f + m);
    return copysignf(t, x);
}

/* ---- convolution, pooling, padding ------------------------------------- */

/* Copies n floats. Up to 32 without a call, as two overlapping copies of a
 * fixed size: the patch rows of a small map are a few floats each (28 and 5
 * in the CNN's convolutions), where a memcpy call per row cost 3x the copy. */
static inline void copy_floats(float *restrict d, const float *restrict s, int n)
{
    if (n > 32) {
        memcpy(d, s, (size_t)n * sizeof *d);
    } else if (n >= 16) {
        memcpy(d, s, 16 * sizeof *d);
        memcpy(d + n - 16, s + n - 16, 16 * sizeof *d);
    } else if (n >= 8) {
        memcpy(d, s, 8 * sizeof *d);
        memcpy(d + n - 8, s + n - 8, 8 * sizeof *d);
    } else if (n >= 4) {
        memcpy(d, s, 4 * sizeof *d);
        memcpy(d + n - 4, s + n - 4, 4 * sizeof *d);
    } else if (n >= 2) {
        memcpy(d, s, 2 * sizeof *d);
        memcpy(d + n - 2, s + n - 2, 2 * sizeof *d);
    } else if (n == 1) {
        d[0] = s[0];
    }
}

/* col (in_c k k, count P) with P = out_h out_w, for the `count` examples
 * from x: column b P + p holds the k x k x in_c patch under output pixel p
 * of example b. */
static void im2col(const model_layer *l, const float *x, int count, float *col)
{
    int k = l->k, oh = l->out_h, ow = l->out_w, ih = l->in_h, iw = l->in_w;
    size_t P = (size_t)oh * ow, cols = (size_t)count * P;
    for (int c = 0; c < l->in_c; c++)
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++) {
                float *row = col + ((size_t)(c * k + ky) * k + kx) * cols;
                for (int b = 0; b < count; b++) {
                    const float *src = x + (size_t)b * l->in_size + ((size_t)c * ih + ky) * iw + kx;
                    float *dst = row + (size_t)b * P;
                    for (int y = 0; y < oh; y++, src += iw, dst += ow)
                        copy_floats(dst, src, ow);
                }
            }
}

/* The adjoint of im2col: dx (count, in) = every column entry added back to
 * its input pixel; ow is l->out_w. */
static inline void col2im_rows(const model_layer *l, const float *col, int count, float *dx,
                               int ow)
{
    int k = l->k, oh = l->out_h, ih = l->in_h, iw = l->in_w;
    size_t P = (size_t)oh * ow, cols = (size_t)count * P;
    memset(dx, 0, (size_t)count * l->in_size * sizeof *dx);
    for (int c = 0; c < l->in_c; c++)
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++) {
                const float *row = col + ((size_t)(c * k + ky) * k + kx) * cols;
                for (int b = 0; b < count; b++) {
                    const float *src = row + (size_t)b * P;
                    float *dst = dx + (size_t)b * l->in_size + ((size_t)c * ih + ky) * iw + kx;
                    for (int y = 0; y < oh; y++, src += ow, dst += iw)
                        for (int xx = 0; xx < ow; xx++)
                            dst[xx] += src[xx];
                }
            }
}

/* Maps up to 8 pixels wide get a copy of the loop with the width a
 * constant, which the compiler unrolls: on the 5-wide maps of the CNN's
 * second convolution, twice as fast as a loop of unknown length. */
static void col2im(const model_layer *l, const float *col, int count, float *dx)
{
    switch (l->out_w) {
    case 1: col2im_rows(l, col, count, dx, 1); break;
    case 2: col2im_rows(l, col, count, dx, 2); break;
    case 3: col2im_rows(l, col, count, dx, 3); break;
    case 4: col2im_rows(l, col, count, dx, 4); break;
    case 5: col2im_rows(l, col, count, dx, 5); break;
    case 6: col2im_rows(l, col, count, dx, 6); break;
    case 7: col2im_rows(l, col, count, dx, 7); break;
    case 8: col2im_rows(l, col, count, dx, 8); break;
    default: col2im_rows(l, col, count, dx, l->out_w); break;
    }
}

/* CONV_ZEROED: a GEMM's fresh output is cleared with memset and the GEMM
 * adds to it (beta = 1). OpenBLAS does the same for beta = 0, zeroing C and
 * then adding, so the sums are the same bits; its zeroing loop was 3% of the
 * CNN's training time, several times slower than memset. */

/* One GEMM per tile: (out_c, tile P) = W col, the bias added (one sum per
 * output) and copied out per example to y (batch, out_c, P); a tile of one
 * example is already in that layout and is written in place. With th (a
 * tanh layer next) the pass writes tanh(W col + b) to th instead, from
 * tmp, while the tile is in cache, and leaves y, which nothing reads then,
 * unwritten: 100 KB an example less to send to memory in the CNN's first
 * convolution. */
static void conv_forward(const model_layer *l, const float *params, const float *x, float *y,
                         float *th, int batch, model_ws *ws)
{
    const float *w = params + l->param_offset;       /* (out_c, in_c k k) */
    const float *bias = w + l->param_count - (size_t)l->out_c;
    int K = l->in_c * l->k * l->k, P = l->out_h * l->out_w, tile = conv_tile(l, batch);
    for (int b0 = 0; b0 < batch; b0 += tile) {
        int count = batch - b0 < tile ? batch - b0 : tile, N = count * P;
        float *prod = count == 1 && !th ? y + (size_t)b0 * l->out_size : ws->tmp;
        im2col(l, x + (size_t)b0 * l->in_size, count, ws->col);
        memset(prod, 0, (size_t)l->out_c * N * sizeof *prod); /* see CONV_ZEROED */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, l->out_c, N, K, 1.0f, w, K,
                    ws->col, N, 1.0f, prod, N);
        for (int b = 0; b < count; b++)
            for (int o = 0; o < l->out_c; o++) {
                const float *src = prod + (size_t)o * N + (size_t)b * P;
                size_t at = (size_t)(b0 + b) * l->out_size + (size_t)o * P;
                if (th) {
                    for (int p = 0; p < P; p++)
                        th[at + p] = tanh_fast(src[p] + bias[o]);
                } else {
                    for (int p = 0; p < P; p++)
                        y[at + p] = src[p] + bias[o];
                }
            }
    }
}

/* delta (batch, out_c, P) in; dx (batch, in) out when need_dx; then
 * out_W += alpha dW, out_b += alpha db, or, with sqnorm (out unused),
 * sqnorm[b] += the squared norm of example b's own weight and bias
 * gradient. Tile by tile, as the forward: dx, then the tile's patches
 * again (recomputed: cheaper than keeping the batch's), then the weight
 * gradient. A batch of one tile adds alpha dW to out in its GEMM; over
 * several, dW is summed over the tiles in order in ws->grad and added
 * once at the end, so out, which may alias params, changes only after
 * every tile's dx. With sqnorm, ws->grad holds one example's dW at a time.
 * The bias gradient is one float sum per map over the batch's examples and
 * pixels in order. */
static void conv_backward(const model_layer *l, const float *params, const float *x,
                          const float *delta, float *dx, int batch, float alpha, float *out,
                          double *sqnorm, model_ws *ws)
{
    const float *w = params + l->param_offset;
    int K = l->in_c * l->k * l->k, P = l->out_h * l->out_w, tile = conv_tile(l, batch);
    size_t wcount = (size_t)l->out_c * (size_t)K;
    int one_tile = tile == batch;
    float *gw = ws->grad, *gb = ws->grad + wcount, galpha = 1.0f;
    if (!sqnorm && one_tile) {
        gw = out + l->param_offset;
        galpha = alpha;
    }
    for (int b0 = 0; b0 < batch; b0 += tile) {
        int count = batch - b0 < tile ? batch - b0 : tile, N = count * P;
        const float *db = delta + (size_t)b0 * l->out_size;
        const float *dy = db; /* the tile's delta, (out_c, N): map-major, as the GEMM's */
        if (count > 1) {
            for (int b = 0; b < count; b++)
                for (int o = 0; o < l->out_c; o++)
                    memcpy(ws->tmp + (size_t)o * N + (size_t)b * P,
                           db + (size_t)b * l->out_size + (size_t)o * P,
                           (size_t)P * sizeof *delta);
            dy = ws->tmp;
        }
        if (dx) {
            memset(ws->dcol, 0, (size_t)K * N * sizeof *ws->dcol);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, N, l->out_c, 1.0f, w, K, dy,
                        N, 1.0f, ws->dcol, N);
            col2im(l, ws->dcol, count, dx + (size_t)b0 * l->in_size);
        }
        im2col(l, x + (size_t)b0 * l->in_size, count, ws->col);
        if (sqnorm) {
            /* Example b's columns are b P .. b P + P - 1 of dy and col. */
            for (int b = 0; b < count; b++) {
                memset(gw, 0, wcount * sizeof *gw);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, l->out_c, K, P, 1.0f,
                            dy + (size_t)b * P, N, ws->col + (size_t)b * P, N, 1.0f, gw, K);
                double s = 0;
                for (size_t j = 0; j < wcount; j++)
                    s += (double)gw[j] * gw[j];
                for (int o = 0; o < l->out_c; o++) {
                    const float *d = dy + (size_t)o * N + (size_t)b * P;
                    double t = 0;
                    for (int i = 0; i < P; i++)
                        t += d[i];
                    s += t * t;
                }
                sqnorm[b0 + b] += s;
            }
            continue;
        }
        if (!one_tile && b0 == 0)
            memset(gw, 0, wcount * sizeof *gw);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, l->out_c, K, N, galpha, dy, N,
                    ws->col, N, 1.0f, gw, K);
        /* Each map's sum is one chain of float adds in a fixed order; the
         * maps run side by side (o innermost), so the adds overlap instead
         * of each waiting for the one before. */
        if (b0 == 0)
            memset(gb, 0, (size_t)l->out_c * sizeof *gb);
        for (int b = 0; b < count; b++) {
            const float *d = db + (size_t)b * l->out_size;
            for (int i = 0; i < P; i++)
                for (int o = 0; o < l->out_c; o++)
                    gb[o] += d[(size_t)o * P + i];
        }
    }
    if (sqnorm)
        return;
    float *w_out = out + l->param_offset, *b_out = w_out + wcount;
    if (!one_tile)
        for (size_t j = 0; j < wcount; j++)
            w_out[j] += alpha * gw[j];
    for (int o = 0; o < l->out_c; o++)
        b_out[o] += alpha * gb[o];
}

/* Max over each k x k window; argmax keeps the input position of the first
 * maximum (ties go to the earliest in row-major order). Without branches,
 * so that with a constant k (pool_forward inlines it for k = 2 and 3) the
 * compiler runs the windows of a row side by side: 4x faster than a
 * compare-and-branch chain per window. */
static inline void pool_forward_k(const model_layer *l, const float *x, float *y,
                                  uint32_t *argmax, int batch, int k)
{
    int ih = l->in_h, iw = l->in_w, oh = l->out_h, ow = l->out_w;
    for (int b = 0; b < batch; b++)
        for (int c = 0; c < l->in_c; c++) {
            const float *img = x + (size_t)b * l->in_size + (size_t)c * ih * iw;
            size_t base = (size_t)b * l->out_size + (size_t)c * oh * ow;
            uint32_t map = (uint32_t)((size_t)c * ih * iw);
            for (int yy = 0; yy < oh; yy++) {
                float *yo = y + base + (size_t)yy * ow;
                uint32_t *ao = argmax + base + (size_t)yy * ow;
                for (int xx = 0; xx < ow; xx++) {
                    int corner = yy * k * iw + xx * k, best = corner;
                    float v = img[corner];
                    for (int dy = 0; dy < k; dy++)
                        for (int dx = 0; dx < k; dx++) {
                            int at = corner + dy * iw + dx;
                            float u = img[at];
                            best = u > v ? at : best;
                            v = u > v ? u : v;
                        }
                    yo[xx] = v;
                    ao[xx] = map + (uint32_t)best;
                }
            }
        }
}

static void pool_forward(const model_layer *l, const float *x, float *y, uint32_t *argmax,
                         int batch)
{
    switch (l->k) {
    case 2: pool_forward_k(l, x, y, argmax, batch, 2); break;
    case 3: pool_forward_k(l, x, y, argmax, batch, 3); break;
    default: pool_forward_k(l, x, y, argmax, batch, l->k); break;
    }
}

/* dx (batch, in) = delta at each window's maximum, 0 elsewhere. With th
 * (the output of a tanh layer below), the tanh's backward too, dx *=
 * 1 - th^2: it leaves the zeros zero, so it is applied at the maxima
 * alone, in the same pass. Same bits as the two layers apart, except that
 * a NaN activation off the maxima no longer turns its zero into NaN. */
static void pool_backward(const model_layer *l, const float *delta, const uint32_t *argmax,
                          const float *th, float *dx, int batch)
{
    for (int b = 0; b < batch; b++) { /* cleared example by example: still in cache for the adds */
        float *d = dx + (size_t)b * l->in_size;
        const float *e = delta + (size_t)b * l->out_size;
        const uint32_t *at = argmax + (size_t)b * l->out_size;
        memset(d, 0, l->in_size * sizeof *dx);
        if (th) {
            const float *t = th + (size_t)b * l->in_size;
            for (size_t i = 0; i < l->out_size; i++)
                d[at[i]] = (d[at[i]] + e[i]) * (1.0f - t[at[i]] * t[at[i]]);
        } else {
            for (size_t i = 0; i < l->out_size; i++)
                d[at[i]] += e[i];
        }
    }
}

static void pad_forward(const model_layer *l, const float *x, float *y, int batch)
{
    int k = l->k, ih = l->in_h, iw = l->in_w, ow = l->out_w;
    memset(y, 0, (size_t)batch * l->out_size * sizeof *y);
    for (int b = 0; b < batch; b++)
        for (int c = 0; c < l->in_c; c++)
            for (int yy = 0; yy < ih; yy++)
                memcpy(y + (size_t)b * l->out_size + ((size_t)c * l->out_h + yy + k) * ow + k,
                       x + (size_t)b * l->in_size + ((size_t)c * ih + yy) * iw,
                       (size_t)iw * sizeof *y);
}

static void pad_backward(const model_layer *l, const float *delta, float *dx, int batch)
{
    int k = l->k, ih = l->in_h, iw = l->in_w, ow = l->out_w;
    for (int b = 0; b < batch; b++)
        for (int c = 0; c < l->in_c; c++)
            for (int yy = 0; yy < ih; yy++)
                memcpy(dx + (size_t)b * l->in_size + ((size_t)c * ih + yy) * iw,
                       delta + (size_t)b * l->out_size + ((size_t)c * l->out_h + yy + k) * ow + k,
                       (size_t)iw * sizeof *dx);
}

/* ---- forward ----------------------------------------------------------- */

/* y (batch, out) = x (batch, in) W^T + b */
static void dense_forward(const model_layer *l, const float *params, const float *x, float *y,
                          int batch)
{
    const float *w = params + l->param_offset;  /* (out, in) */
    const float *b = w + l->out_size * l->in_size; /* (out) */
    int in = (int)l->in_size, out = (int)l->out_size;
    for (int r = 0; r < batch; r++)
        memcpy(y + (size_t)r * out, b, (size_t)out * sizeof *y);
    if (batch == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, out, in, 1.0f, w, in, x, 1, 1.0f, y, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, batch, out, in, 1.0f, x, in, w, in,
                    1.0f, y, out);
}

double model_forward(const model_t *m, const float *params, model_ws *ws, int batch,
                     int *correct)
{
    const float *x = ws->input;
    for (int i = 0; i < m->num_layers; i++) {
        const model_layer *l = &m->layers[i];
        float *y = ws->act[i];
        size_t n = (size_t)batch * l->out_size;
        switch (l->kind) {
        case LAYER_DENSE:
            dense_forward(l, params, x, y, batch);
            break;
        case LAYER_RELU:
            for (size_t j = 0; j < n; j++)
                y[j] = x[j] > 0.0f ? x[j] : 0.0f;
            break;
        case LAYER_TANH:
            for (size_t j = 0; j < n; j++)
                y[j] = tanh_fast(x[j]);
            break;
        case LAYER_CONV:
            /* A tanh after it is done in the convolution's pass (same bits);
             * the convolution's own output is then not written. */
            if (i + 1 < m->num_layers && m->layers[i + 1].kind == LAYER_TANH) {
                conv_forward(l, params, x, y, ws->act[i + 1], batch, ws);
                y = ws->act[++i];
            } else {
                conv_forward(l, params, x, y, NULL, batch, ws);
            }
            break;
        case LAYER_POOL:
            pool_forward(l, x, y, ws->argmax[i], batch);
            break;
        case LAYER_PAD:
            pad_forward(l, x, y, batch);
            break;
        }
        x = y;
    }

    /* Softmax cross-entropy, shifted by the max logit for stability. */
    int k = m->num_classes;
    double loss = 0.0;
    int right = 0;
    for (int r = 0; r < batch; r++) {
        const float *z = x + (size_t)r * k;
        float *p = ws->probs + (size_t)r * k;
        int argmax = 0;
        for (int c = 1; c < k; c++)
            if (z[c] > z[argmax])
                argmax = c;
        float zmax = z[argmax];
        float sum = 0.0f;
        for (int c = 0; c < k; c++) {
            p[c] = expf(z[c] - zmax);
            sum += p[c];
        }
        float inv = 1.0f / sum;
        for (int c = 0; c < k; c++)
            p[c] *= inv;
        int label = ws->labels[r];
        loss += (double)(logf(sum) - (z[label] - zmax));
        right += argmax == label;
    }
    if (correct)
        *correct += right;
    return loss;
}

/* ---- backward ---------------------------------------------------------- */

/* The backward pass after model_forward, in one of two modes:
 *   out != NULL: out[i] += alpha * sum_r scale_r d loss_r / d params[i],
 *                scale_r = weight[r], or `uniform` when weight is NULL;
 *   sqnorm != NULL (out NULL): sqnorm[r] = ||d loss_r / d params||^2, the
 *                squared L2 norm over all parameters of example r's own
 *                gradient, with no parameter touched. Dense layers use
 *                ||dW_r||^2 = ||a_r||^2 ||delta_r||^2 and ||db_r||^2 =
 *                ||delta_r||^2 (dW_r is the outer product delta_r a_r^T;
 *                Goodfellow 2015), so no per-example gradient is formed.
 * The pass is linear in the output deltas, so weighting each example's
 * softmax delta weights its whole gradient. */
static void backward(const model_t *m, const float *params, model_ws *ws, int batch,
                     const float *weight, float uniform, float alpha, float *out,
                     double *sqnorm)
{
    int k = m->num_classes;
    float *delta = ws->delta_a, *spare = ws->delta_b;
    /* d(scaled loss_r)/d logits = scale_r (p - onehot) */
    for (int r = 0; r < batch; r++) {
        float s = weight ? weight[r] : uniform;
        const float *p = ws->probs + (size_t)r * k;
        float *d = delta + (size_t)r * k;
        for (int c = 0; c < k; c++)
            d[c] = p[c] * s;
        d[ws->labels[r]] -= s;
    }
    if (sqnorm)
        for (int r = 0; r < batch; r++)
            sqnorm[r] = 0;

    int first_learning = 0; /* nothing upstream of it learns: no gradient needed there */
    while (first_learning < m->num_layers && m->layers[first_learning].param_count == 0)
        first_learning++;
    for (int i = m->num_layers - 1; i >= first_learning; i--) {
        const model_layer *l = &m->layers[i];
        const float *x = i > 0 ? ws->act[i - 1] : ws->input;
        const float *y = ws->act[i];
        size_t n = (size_t)batch * l->out_size;
        int need_dx = i > first_learning;
        switch (l->kind) {
        case LAYER_DENSE: {
            const float *w = params + l->param_offset;
            int in = (int)l->in_size, o = (int)l->out_size;
            /* dX before the weights change: out may alias params. */
            if (need_dx) {
                if (batch == 1)
                    cblas_sgemv(CblasRowMajor, CblasTrans, o, in, 1.0f, w, in, delta, 1, 0.0f,
                                spare, 1);
                else
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, batch, in, o, 1.0f,
                                delta, o, w, in, 0.0f, spare, in);
            }
            if (sqnorm) {
                for (int r = 0; r < batch; r++) {
                    const float *a = x + (size_t)r * in, *d = delta + (size_t)r * o;
                    double a2 = 0, d2 = 0;
                    for (int j = 0; j < in; j++)
                        a2 += (double)a[j] * a[j];
                    for (int c = 0; c < o; c++)
                        d2 += (double)d[c] * d[c];
                    sqnorm[r] += d2 * (a2 + 1.0);
                }
            } else {
                float *w_out = out + l->param_offset;
                float *b_out = w_out + l->out_size * l->in_size;
                if (batch == 1)
                    cblas_sger(CblasRowMajor, o, in, alpha, delta, 1, x, 1, w_out, in);
                else
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, o, in, batch, alpha,
                                delta, o, x, in, 1.0f, w_out, in);
                for (int r = 0; r < batch; r++) {
                    const float *d = delta + (size_t)r * o;
                    for (int c = 0; c < o; c++)
                        b_out[c] += alpha * d[c];
                }
            }
            if (need_dx) {
                float *t = delta; delta = spare; spare = t;
            }
            break;
        }
        case LAYER_RELU:
            if (need_dx)
                for (size_t j = 0; j < n; j++)
                    delta[j] = y[j] > 0.0f ? delta[j] : 0.0f;
            break;
        case LAYER_TANH:
            if (need_dx)
                for (size_t j = 0; j < n; j++)
                    delta[j] *= 1.0f - y[j] * y[j];
            break;
        case LAYER_CONV:
            conv_backward(l, params, x, delta, need_dx ? spare : NULL, batch, alpha, out, sqnorm,
                          ws);
            if (need_dx) {
                float *t = delta; delta = spare; spare = t;
            }
            break;
        case LAYER_POOL:
            if (need_dx) {
                /* A tanh below (which then needs dx too) is done in the pool's pass. */
                const float *th = m->layers[i - 1].kind == LAYER_TANH ? ws->act[i - 1] : NULL;
                pool_backward(l, delta, ws->argmax[i], th, spare, batch);
                float *t = delta; delta = spare; spare = t;
                if (th)
                    i--;
            }
            break;
        case LAYER_PAD:
            if (need_dx) {
                pad_backward(l, delta, spare, batch);
                float *t = delta; delta = spare; spare = t;
            }
            break;
        }
    }
}

void model_backward(const model_t *m, const float *params, model_ws *ws, int batch,
                    float alpha, float *out)
{
    backward(m, params, ws, batch, NULL, 1.0f / (float)batch, alpha, out, NULL);
}

void model_backward_weighted(const model_t *m, const float *params, model_ws *ws, int batch,
                             const float *weight, float alpha, float *out)
{
    backward(m, params, ws, batch, weight, 0.0f, alpha, out, NULL);
}

void model_example_sqnorms(const model_t *m, const float *params, model_ws *ws, int batch,
                           double *sqnorm)
{
    backward(m, params, ws, batch, NULL, 1.0f, 0.0f, NULL, sqnorm);
}
