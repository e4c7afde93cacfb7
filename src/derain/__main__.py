"""``python -m derain``: the same as the ``derain`` command."""
import sys

from derain.cli import main

sys.exit(main())
