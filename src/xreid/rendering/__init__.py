"""Drawing: the HTML explanation report, saliency-map pictures, the embedding-analysis pages.

Rendering reads the typed records that ``xreid.explain`` computes and never computes an
explanation itself.
"""
