pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.kafka",
    "tests.fixtures.api",
    "tests.fixtures.receivers",
    "tests.fixtures.s3",
]
