import sys

from dnnls_tf.cli import main

sys.exit(main())
