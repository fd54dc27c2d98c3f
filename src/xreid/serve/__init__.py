"""``xreid serve``: a local search service over a gallery index (``xreid.index``): a REST API
(FastAPI, documented at ``/docs``) and an offline web page for analysts."""
