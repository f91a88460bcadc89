"""Layers with Keras 3's names and arguments."""

from nkeras.layers.activations import PReLU
from nkeras.layers.attention import MultiHeadAttention
from nkeras.layers.convolutional import Conv1D, Conv2D, Conv2DTranspose
from nkeras.layers.core import Activation, Dense, Dropout
from nkeras.layers.depthwise_convolutional import DepthwiseConv2D, SeparableConv2D
from nkeras.layers.embedding import Embedding
from nkeras.layers.layer import Input, InputLayer, Layer
from nkeras.layers.lambda_layer import Lambda
from nkeras.layers.masking import Masking
from nkeras.layers.merging import (
    Add,
    Average,
    Concatenate,
    Dot,
    Maximum,
    Minimum,
    Multiply,
    Subtract,
    add,
    average,
    concatenate,
    dot,
    maximum,
    minimum,
    multiply,
    subtract,
)
from nkeras.layers.normalization import BatchNormalization, LayerNormalization
from nkeras.layers.pooling import (
    AveragePooling1D,
    AveragePooling2D,
    AvgPool1D,
    AvgPool2D,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalAvgPool1D,
    GlobalAvgPool2D,
    GlobalMaxPool1D,
    GlobalMaxPool2D,
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
    MaxPool1D,
    MaxPool2D,
    MaxPooling1D,
    MaxPooling2D,
)
from nkeras.layers.recurrent import GRU, LSTM, SimpleRNN
from nkeras.layers.regularization import SpatialDropout1D, SpatialDropout2D
from nkeras.layers.reshaping import (
    Cropping1D,
    Cropping2D,
    Flatten,
    Permute,
    RepeatVector,
    Reshape,
    UpSampling1D,
    UpSampling2D,
    ZeroPadding1D,
    ZeroPadding2D,
)
from nkeras.layers.wrappers import Bidirectional, TimeDistributed

__all__ = [
    "Activation", "AveragePooling1D", "AveragePooling2D", "BatchNormalization", "Conv1D", "Conv2D",
    "Conv2DTranspose", "Cropping1D", "Cropping2D", "Dense", "DepthwiseConv2D", "Dropout", "Flatten",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "Input",
    "GRU", "InputLayer", "LSTM", "Lambda", "Layer", "LayerNormalization", "SimpleRNN", "MaxPooling1D", "MaxPooling2D", "PReLU", "Reshape",
    "SeparableConv2D", "SpatialDropout1D", "SpatialDropout2D", "UpSampling1D", "UpSampling2D", "ZeroPadding1D",
    "ZeroPadding2D",
    # Keras's short names for the pooling layers
    "AvgPool1D", "AvgPool2D", "GlobalAvgPool1D", "GlobalAvgPool2D", "GlobalMaxPool1D", "GlobalMaxPool2D",
    "MaxPool1D", "MaxPool2D",
    # merge layers and their functional forms
    "Add", "Average", "Concatenate", "Dot", "Maximum", "Minimum", "Multiply", "Subtract",
    "add", "average", "concatenate", "dot", "maximum", "minimum", "multiply", "subtract",
    # attention
    "MultiHeadAttention",
    # sequences
    "Embedding", "Masking", "Permute", "RepeatVector", "TimeDistributed", "Bidirectional",
]
