import sys

from kemi_tools.stack.run import main

sys.exit(main(sys.argv[1:]))
