"""`python -m hyperguide.cli` (and `torchrun ... -m hyperguide.cli`): the `hyperguide` command."""

import sys

from hyperguide.cli.app import main

sys.exit(main())
