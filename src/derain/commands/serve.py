"""``derain serve``: the local web page."""
from __future__ import annotations

import argparse
import os
import sys

from derain.commands import inference_options


def main(args: argparse.Namespace) -> int:
    """``derain serve``: the local web page."""
    from derain.serve import ServeConfig, serve
    config = ServeConfig(host=args.host, port=args.port, weights=args.weights, device=args.device,
                         options=inference_options(args), max_upload_bytes=int(args.max_upload_mb * 1e6),
                         max_pixels=int(args.max_megapixels * 1e6), open_browser=args.open, quiet=args.quiet)
    code = serve(config)
    # serve() returns only after Ctrl+C, once the server is closed and its worker has left torch: nothing is left
    # to clean up. Leave without the interpreter's teardown, where torch's native threads can abort the process
    # ("terminate called without an active exception", exit -6: seen once in CI after a clean stop).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
