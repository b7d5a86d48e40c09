import sys

from ivr.cli import main

if __name__ == "__main__":  # the event log's writer process (spawn) imports this module's parent only
    sys.exit(main())
