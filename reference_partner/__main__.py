"""python -m reference_partner: serve the partner API on --listen."""

import sys

from reference_partner.server import main

if __name__ == "__main__":
    sys.exit(main())
