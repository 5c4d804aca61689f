"""``python -m cocktailparty.cli``: the ``cocktail`` command."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
