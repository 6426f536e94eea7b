import sys

from studio.server import main

sys.exit(main())
