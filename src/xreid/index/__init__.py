"""Stored embeddings of galleries: written by ``xreid embed``, read by ranking and explanations."""
