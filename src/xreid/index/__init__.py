"""Stored embeddings of galleries: ``features`` (the ``.npz`` files ``xreid embed`` writes, read by
ranking and explanations) and the persistent gallery index of ``xreid index`` (``gallery``: format,
writer, search with filters; ``ann``: the faiss structure; ``metadata``: CSV lists, camera, time)."""
