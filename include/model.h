/* model: a feed-forward network as a list of layers over ONE flat float32
 * parameter buffer; each layer owns a contiguous view [offset, offset+count). */
#ifndef DSSGD_MODEL_H
#define DSSGD_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "rng.h"

#define MODEL_MAX_LAYERS 32
/* Labels are bytes (model_ws_labels), so at most 256 classes. */
#define MODEL_MAX_CLASSES 256
#define MODEL_SPEC_LEN 256

typedef enum {
    LAYER_DENSE, /* y = W x + b; params: W (out_size, in_size) then b (out_size) */
    LAYER_RELU,
    LAYER_TANH,
    LAYER_CONV,  /* valid, stride 1, over all in_c channels; params: W (out_c, in_c,
                  * k, k) then b (out_c) */
    LAYER_POOL,  /* max-pool, window k, stride k (floor) */
    LAYER_PAD,   /* zero padding by k on each side (the input stage) */
} model_layer_kind;

/* Shapes are per example, (channels, height, width); a dense layer's output is
 * (out_size, 1, 1), and a dense layer after a conv or pool layer reads its
 * output flattened (in_size = c*h*w). */
typedef struct {
    model_layer_kind kind;
    int in_c, in_h, in_w;
    int out_c, out_h, out_w;
    int k;                        /* conv kernel, pool window or padding */
    size_t in_size, out_size;     /* c*h*w of input and output */
    size_t param_offset;          /* first parameter of this layer in the flat buffer */
    size_t param_count;           /* 0 for parameter-free layers */
} model_layer;

/* A network's architecture; holds no parameters (a value, freely copied). */
typedef struct {
    char spec[MODEL_SPEC_LEN];    /* the normalised spec it was built from */
    int num_layers;
    model_layer layers[MODEL_MAX_LAYERS];
    int input_c, input_h, input_w; /* example shape, e.g. 1 x 28 x 28 */
    size_t input_size;             /* input_c * input_h * input_w */
    int num_classes;              /* output size; softmax cross-entropy on top */
    size_t num_params;
} model_t;

/* Builds a model for examples of input_c x input_h x input_w (C x H x W;
 * a vector of D features is 1 x 1 x D) and num_classes (2 to
 * MODEL_MAX_CLASSES). The first layer reads all C channels; a dense layer
 * reads its input flattened, channel-major (c*h*w values). Specs:
 *   "mlp"                  dense 128 ReLU, dense 64 ReLU, dense num_classes,
 *                          on any input (the paper's 784-128-64-10 on MNIST)
 *   "cnn"                  the paper's MNIST CNN on any image of at least
 *                          18 x 18 pixels and any C: padded by 2, conv 5x5x32
 *                          tanh, max-pool 3, conv 5x5x64 tanh, max-pool 2,
 *                          dense 200 tanh, dense num_classes (on 1 x 28 x 28
 *                          and 10 classes: 105,506 parameters; on 3 x 32 x 32:
 *                          171,106). Smaller images, and vectors, are refused
 *                          with the least size and the shape given.
 *   "784-256-10"           an MLP with ReLU between dense layers: the first
 *                          number must be C*H*W, the last num_classes (else
 *                          refused, naming the shape and the classes)
 *   "d128-relu,d64-tanh,d10"  layer by layer: dN dense, cKxN conv (K x K over
 *                          all input channels, N maps), pK max-pool, padK zero
 *                          padding, relu, tanh
 * A final dense layer of num_classes outputs is required. Returns 0, or -1
 * with a message in err (ERR_LEN bytes) for a bad spec, shape or class
 * count, or a layer that does not fit its input. */
int model_build(model_t *m, const char *spec, int input_c, int input_h, int input_w,
                int num_classes, char *err);

/* Glorot-uniform weights, zero biases, drawn from rng in layer order. */
void model_init_params(const model_t *m, float *params, rng_t *rng);

/* Scratch memory for batches of up to max_batch examples: activations,
 * deltas, labels. Shared by every participant on a rank (they run in turn).
 * NULL when memory runs out, or when max_batch times a conv layer's output
 * pixels (out_h out_w) exceeds INT_MAX (the sizes of its activation
 * buffers, counted in int by the layers' loops). */
typedef struct model_ws model_ws;
model_ws *model_ws_create(const model_t *m, int max_batch);
void model_ws_free(model_ws *ws);
int model_ws_max_batch(const model_ws *ws);
/* Where the caller puts a batch: (max_batch, input_size) pixels and labels. */
float *model_ws_input(model_ws *ws);
uint8_t *model_ws_labels(model_ws *ws);
/* Class probabilities of the last forward pass: (batch, num_classes). */
const float *model_ws_probs(const model_ws *ws);

/* Forward pass on the batch in the workspace. Returns the SUM of the
 * cross-entropy losses over the batch; adds the number of correct
 * predictions (argmax, ties to the lower class) to *correct if not NULL. */
double model_forward(const model_t *m, const float *params, model_ws *ws, int batch,
                     int *correct);

/* Backward pass after model_forward on the same batch:
 *   out[i] += alpha * d(mean loss)/d params[i]   for all i.
 * With out = a zeroed buffer and alpha = 1 it is the gradient; with
 * out = params and alpha = -lr it is one SGD step, fused (each layer reads
 * its weights before it updates them, so the aliasing is safe). */
void model_backward(const model_t *m, const float *params, model_ws *ws, int batch,
                    float alpha, float *out);

/* Per-example gradients (DP-SGD), after model_forward on the same batch.
 *
 * model_example_sqnorms: sqnorm[r] = || d loss_r / d params ||^2 for r <
 * batch, the squared L2 norm over ALL parameters of example r's own loss
 * (not the mean). Dense layers by ||a_r||^2 ||delta_r||^2 + ||delta_r||^2
 * without forming the gradient; convolutions form one example's weight
 * gradient at a time (a GEMM per example and layer). Changes no parameter;
 * model_backward_weighted may follow on the same forward pass.
 *
 * model_backward_weighted: out[i] += alpha * sum_r weight[r] *
 * d loss_r / d params[i], one backward pass (model_backward is weight[r] =
 * 1 / batch). Same aliasing rule as model_backward. */
void model_example_sqnorms(const model_t *m, const float *params, model_ws *ws, int batch,
                           double *sqnorm);
void model_backward_weighted(const model_t *m, const float *params, model_ws *ws, int batch,
                             const float *weight, float alpha, float *out);

#endif
