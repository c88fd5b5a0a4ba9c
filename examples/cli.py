"""Running a script's ``main``: user errors become a message and exit status 2, not a traceback."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from examples.data import ExampleError  # noqa: E402


def run(main, argv=None):
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # retracing notices when the scripts build one model per loss
    try:
        return main(argv)
    except ExampleError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
