import sys

from eeg_assets.cli import main

sys.exit(main())
