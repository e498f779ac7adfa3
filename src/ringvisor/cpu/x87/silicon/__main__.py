import sys

from ringvisor.cpu.x87.silicon.campaign import main

sys.exit(main())
