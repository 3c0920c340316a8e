from shopstream.sources.kafka_config import client_config
from shopstream.sources.select import parse_kafka


def test_shopstream_kafka_variables_become_librdkafka_settings() -> None:
    environ = {
        "SHOPSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "SHOPSTREAM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "SHOPSTREAM_KAFKA_SESSION_TIMEOUT_MS": "45000",
        "SHOPSTREAM_DATABASE_URL": "postgresql://ignored",
    }
    config = client_config("b:9092", {"session.timeout.ms": 6000}, environ)
    assert config == {
        "bootstrap.servers": "b:9092",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "session.timeout.ms": "45000",  # the user's setting wins over ours
    }


def test_kafka_source_uri() -> None:
    spec = parse_kafka("kafka://a:9092,b:9092/orders,clicks")
    assert spec is not None
    assert (spec.bootstrap, spec.topics) == ("a:9092,b:9092", ["orders", "clicks"])
    assert parse_kafka("/var/spool/events") is None
