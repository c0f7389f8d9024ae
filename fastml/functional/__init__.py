"""Functional ops with torch.nn.functional names: ``import fastml.functional as F``."""
from .activation import *  # noqa: F401,F403
from .activation import __all__ as _activation_all
from .loss import *  # noqa: F401,F403
from .loss import __all__ as _loss_all
from .linear import *  # noqa: F401,F403
from .linear import __all__ as _linear_all

__all__ = list(_activation_all) + list(_loss_all) + list(_linear_all)
from .attention import *  # noqa: F401,F403
from .attention import __all__ as _attention_all

__all__ += list(_attention_all)
