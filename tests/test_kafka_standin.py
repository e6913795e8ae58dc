"""The Kafka stand-in: librdkafka's mock cluster in its own process, used through the provider's hooks."""

from __future__ import annotations

import pytest


def test_provider_hooks_produce_and_consume_through_the_standin(kafka_broker):
    from airflow.providers.apache.kafka.hooks.consume import KafkaConsumerHook
    from airflow.providers.apache.kafka.hooks.produce import KafkaProducerHook

    producer = KafkaProducerHook(kafka_config_id="aurora_kafka").get_producer()
    delivered = []
    for i in range(3):
        producer.produce("aurora.test", key=b"k", value=f"m{i}".encode(), on_delivery=lambda e, m: delivered.append(e))
    assert producer.flush(15) == 0 and delivered == [None, None, None]
    consumer = KafkaConsumerHook(["aurora.test"], kafka_config_id="aurora_kafka_monitor").get_consumer()
    got = []
    try:
        for _ in range(60):
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                got.append(msg.value())
            if len(got) == 3:
                break
    finally:
        consumer.close()
    assert got == [b"m0", b"m1", b"m2"]


def test_stopped_standin_is_an_outage_and_a_restart_a_new_cluster(kafka_broker):
    from airflow.providers.apache.kafka.hooks.produce import KafkaProducerHook
    from confluent_kafka import KafkaException

    first = kafka_broker.bootstrap
    kafka_broker.stop()
    assert not kafka_broker.running
    with pytest.raises(KafkaException):
        KafkaProducerHook(kafka_config_id="aurora_kafka").get_producer().list_topics(timeout=2)
    second = kafka_broker.start()
    assert second and second != first  # librdkafka chose new ports; the connection follows
    assert KafkaProducerHook(kafka_config_id="aurora_kafka").get_producer().list_topics(timeout=10).brokers
