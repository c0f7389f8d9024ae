"""Functional ops with torch.nn.functional names: ``import fastml.functional as F``."""
from .activation import *  # noqa: F401,F403
from .activation import __all__ as _activation_all
from .loss import *  # noqa: F401,F403
from .loss import __all__ as _loss_all
from .linear import *  # noqa: F401,F403
from .linear import __all__ as _linear_all
from .conv import *  # noqa: F401,F403
from .conv import __all__ as _conv_all
from .rnn import *  # noqa: F401,F403
from .rnn import __all__ as _rnn_all
from .pool import *  # noqa: F401,F403
from .pool import __all__ as _pool_all

__all__ = (list(_activation_all) + list(_loss_all) + list(_linear_all) + list(_conv_all) + list(_rnn_all)
           + list(_pool_all))
from .attention import *  # noqa: F401,F403
from .attention import __all__ as _attention_all

__all__ += list(_attention_all)
