"""``python -m analogsam ...``: the ``analogsam`` command, also what ``torchrun ... -m analogsam train ...``
starts in every process (see :mod:`analogsam.distributed`)."""

import sys

from analogsam.cli import main

if __name__ == "__main__":
    sys.exit(main())
