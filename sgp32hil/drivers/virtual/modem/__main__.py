"""``python -m sgp32hil.drivers.virtual.modem --link /tmp/modem0 --euicc-state DIR``."""

import logging
import sys

from .service import main

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
sys.exit(main())
