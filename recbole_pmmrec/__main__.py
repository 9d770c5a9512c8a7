import sys

from recbole_pmmrec.quick_start import main

sys.exit(main())
