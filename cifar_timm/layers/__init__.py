"""Layers the model families share, written for speed on the machines the zoo trains on."""
from .compiled import CompiledFunction, compiled_layers_enabled
from .grouped_conv import GroupedConv2d, block_diagonal_weight, grouped_conv2d
from .mish import FastMish, fast_mish
from .same_avg_pool import keras_same_avg_pool2d, keras_same_avg_pool2d_eager
from .squeeze_excite import SqueezeExcite

__all__ = ['CompiledFunction', 'compiled_layers_enabled', 'GroupedConv2d', 'block_diagonal_weight',
           'grouped_conv2d', 'FastMish', 'fast_mish', 'keras_same_avg_pool2d',
           'keras_same_avg_pool2d_eager', 'SqueezeExcite']
