import sys

from certprune.cli import main

sys.exit(main())
