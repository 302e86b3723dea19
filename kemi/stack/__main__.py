import sys

from kemi.stack.run import main

sys.exit(main(sys.argv[1:]))
