import sys

# pytest-xdist runs tests in execnet workers whose __main__ has neither a spec nor a file.
# pyspark's Spark Connect module (which Great Expectations imports) takes such a process
# for a doctest run and exits it; a worker is no doctest, so it gets a name.
_main = sys.modules["__main__"]
if getattr(_main, "__spec__", None) is None and not hasattr(_main, "__file__"):
    _main.__file__ = "<pytest-xdist worker>"

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.kafka",
    "tests.fixtures.api",
    "tests.fixtures.receivers",
    "tests.fixtures.s3",
]
