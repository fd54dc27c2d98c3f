"""Explanations of re-id rankings in terms of attributes (docs/METHODS.md), as pure computation.

``formulas`` holds every equation as a pure function; ``attribute_head`` the bias-free linear
attribute layer; ``ranking`` assembles the explanation of one query's ranking as typed records;
``embedding_analysis`` reads the embedding through the attribute weights; ``maps`` computes visual
explanations. Nothing here opens a file or draws: fitted artefacts (head, fusion, match
calibration) are read and written through ``xreid.io``, every other input arrives as arrays and
records (``xreid.workflows`` does the I/O), and ``xreid.rendering`` draws. Imports only the layers
below (``models``, ``data``, ``io``, ``binding``), never ``index`` or ``evaluation``.
"""
