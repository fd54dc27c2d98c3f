"""Explanations of re-id rankings in terms of attributes (METHODS.md section 1).

``formulas`` holds every equation as a pure function; ``attribute_head`` the bias-free linear
attribute layer; ``ranking`` assembles the explanation of one query's ranking as plain data;
``report`` draws it (HTML). Computation never renders, rendering never computes.
"""
