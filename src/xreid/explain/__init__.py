"""Explanations of re-id rankings in terms of attributes (docs/METHODS.md), as pure computation.

``formulas`` holds every equation as a pure function; ``attribute_head`` the bias-free linear
attribute layer; ``ranking`` assembles the explanation of one query's ranking as typed records;
``embedding_analysis`` reads the embedding through the attribute weights; ``maps`` computes visual
explanations. Nothing here reads files or draws: ``xreid.workflows`` does the I/O and
``xreid.rendering`` the drawing.
"""
