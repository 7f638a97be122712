import sys

from iot_simulator.cli import main

sys.exit(main())
