"""Float64 NumPy mirrors of the public ops: the test oracle.

Every function here has the signature of its public counterpart (minus ``out=``/``inplace``), computes in
float64 with numerically stable formulas, raises no floating-point warnings, and returns float64. They are
written for clarity, not speed; tests compare every backend and ISA against them.
"""
from .activation import *  # noqa: F401,F403
from .activation import __all__ as _act_all
from . import optim  # noqa: F401  (fastml.reference.optim.adam_step, ...)
from .loss import *  # noqa: F401,F403
from .loss import __all__ as _loss_all
from .linear import *  # noqa: F401,F403
from .linear import __all__ as _linear_all
from .rnn import *  # noqa: F401,F403
from .rnn import __all__ as _rnn_all
from .conv import *  # noqa: F401,F403
from .conv import __all__ as _conv_all
from .pool import *  # noqa: F401,F403
from .pool import __all__ as _pool_all

__all__ = list(_act_all) + list(_loss_all) + list(_linear_all) + list(_conv_all) + list(_rnn_all) + list(_pool_all)
from . import attention  # noqa: F401  (fastml.reference.attention.scaled_dot_product_attention, ...)
from .attention import (scaled_dot_product_attention, scaled_dot_product_attention_forward,  # noqa: F401
                        scaled_dot_product_attention_backward, multi_head_attention_forward, additive_attention,
                        sinusoidal_positional_encoding)

__all__ += ["scaled_dot_product_attention", "scaled_dot_product_attention_forward",
            "scaled_dot_product_attention_backward", "multi_head_attention_forward", "additive_attention",
            "sinusoidal_positional_encoding"]
