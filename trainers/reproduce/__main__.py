"""``python -m trainers.reproduce``: see trainers/reproduce/cli.py."""
import sys

from trainers.reproduce.cli import main

sys.exit(main())
