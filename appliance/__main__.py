"""`python -m appliance` and the `alveare` entry point: the CLI lives in appliance.cli."""

import sys

from appliance.cli import main

if __name__ == "__main__":
    sys.exit(main())
