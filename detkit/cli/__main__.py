"""``python -m detkit.cli COMMAND ...``: the ``detkit`` command without the console script
(``torchrun -m detkit.cli train CONFIG`` for several processes)."""

import sys

from detkit.cli import main

if __name__ == "__main__":
    sys.exit(main())
