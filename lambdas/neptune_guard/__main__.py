import sys

from neptune_guard.cli import main

sys.exit(main())
