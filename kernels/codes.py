"""Integer codes shared by the CPU and CUDA kernels.

Kernels cannot take Python callables cheaply, so an activation is passed as
one of these codes, together with a float ``alpha`` for the activations that
have a parameter (leaky_relu's negative slope, elu's alpha).
"""

LINEAR = 0
RELU = 1
SIGMOID = 2
TANH = 3
SOFTMAX = 4
GELU = 5
ELU = 6
SELU = 7
LEAKY_RELU = 8
SILU = 9
SOFTPLUS = 10
GELU_TANH = 11

ACTIVATION_CODES = {
    "linear": LINEAR,
    "relu": RELU,
    "sigmoid": SIGMOID,
    "tanh": TANH,
    "softmax": SOFTMAX,
    "gelu": GELU,
    "elu": ELU,
    "selu": SELU,
    "leaky_relu": LEAKY_RELU,
    "silu": SILU,
    "swish": SILU,
    "softplus": SOFTPLUS,
}
