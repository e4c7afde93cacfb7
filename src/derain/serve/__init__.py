"""``derain serve``: a local web page to derain photos, with no internet needed.

- :mod:`derain.serve.catalog`: which models the page offers (loaded at start-up);
- :mod:`derain.serve.uploads`: checking, decoding and encoding images in memory;
- :mod:`derain.serve.jobs`: the queue and its worker thread;
- :mod:`derain.serve.app`: the HTTP server and JSON API; ``static/`` holds the page itself.
"""
from derain.serve.app import DerainServer, ServeConfig, make_server, serve

__all__ = ["DerainServer", "ServeConfig", "make_server", "serve"]
