"""Galleries and stored embeddings: the ``Gallery`` interface (``base``) with its in-memory
(``memory``) and persistent (``gallery``: format, writer, search with filters; ``ann``: the faiss
structure) backends, the one filter parser (``filters``), ``features`` (the ``.npz`` files ``xreid
embed`` writes) and ``metadata`` (CSV lists, camera, time)."""
