"""``derain serve``: the local web page."""
from __future__ import annotations

import argparse

from derain.commands import inference_options


def main(args: argparse.Namespace) -> int:
    """``derain serve``: the local web page."""
    from derain.serve import ServeConfig, serve
    config = ServeConfig(host=args.host, port=args.port, weights=args.weights, device=args.device,
                         options=inference_options(args), max_upload_bytes=int(args.max_upload_mb * 1e6),
                         max_pixels=int(args.max_megapixels * 1e6), open_browser=args.open, quiet=args.quiet)
    return serve(config)
