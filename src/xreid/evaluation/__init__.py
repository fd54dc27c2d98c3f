"""Scoring, as computation on arrays: re-id figures (CMC, mAP, mINP, re-ranking), attribute
recognition (mA, reliability) and explanation metrics. Imports data and models below it, never
``explain`` or ``index`` (same rank) nor anything above."""
