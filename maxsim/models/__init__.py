"""Models: backbones, projection heads, loading."""

from maxsim.models.colbert import EncodeOptions, Model
from maxsim.models.loading import ModelLoadError, load

__all__ = ["EncodeOptions", "Model", "ModelLoadError", "load"]
