"""xreid: explainable person re-identification.

The flat library API (torchreid style): load a model, embed images, evaluate a protocol.

    import xreid
    model = xreid.load_embedder("default")
    feats = model.embed_paths(paths)
"""

__version__ = "0.1.0"

# (filled below once embedders exist)

__all__ = ["load_embedder", "__version__"]
