"""python -m rag_appliance -> the CLI."""

import sys

from rag_appliance.cli import main

sys.exit(main())
