"""Visual explanations: where in the images a match, an attention or an attribute comes from.

One concept per file over the tiny base in ``base.py``: ``pair`` (Grad-CAM of the embedding dims
that contribute most to a pair's similarity), ``attention`` (implicit attention: Grad-CAM
accumulated over an image's most activated dims), ``attribute`` (Grad-CAM of an attribute logit
through the attribute layer and the pooling), ``occlusion`` (black-box models: sliding-mask
change of the pair similarity or an attribute probability). All return data (``SaliencyMap``);
``render`` draws them.
"""

from xreid.explain.maps.base import SaliencyMap

__all__ = ["SaliencyMap"]
