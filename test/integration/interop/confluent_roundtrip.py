"""One side of the interop test (test/integration/interop.test.ts), in a client
no one in this project wrote: Confluent's librdkafka-based Python client and
its Avro serializer against the registry's Confluent-compatible API.

It produces EmrRecord values with one codec (and a record that cannot be
decoded, with a null-valued and a repeated header), then reads the processor's
events with isolation.level=read_committed and Confluent's Avro deserializer,
and the dead letters, and prints what it read as one JSON object on stdout.

With READER_SCHEMA_FILE the events are read with that schema as the reader's
(an earlier version of ClinicalEntities: a consumer that has not upgraded),
resolved by Confluent's deserializer against the writer schema it fetches.

Usage: confluent_roundtrip.py BROKERS REGISTRY_URL INPUT OUTPUT DLT CODEC N SCHEMA_FILE [READER_SCHEMA_FILE]
"""

import json
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext


def main() -> None:
    brokers, registry_url, input_topic, output_topic, dlt_topic, codec, n, schema_file = sys.argv[1:9]
    n = int(n)
    registry = SchemaRegistryClient({"url": registry_url})
    with open(schema_file, encoding="utf-8") as f:
        schema = f.read()
    serialize = AvroSerializer(registry, schema, conf={"auto.register.schemas": True})

    producer = Producer({"bootstrap.servers": brokers, "compression.type": codec, "linger.ms": 100, "enable.idempotence": True, "acks": "all"})
    keys = []
    for i in range(n):
        key = f"{codec}-{i}"
        keys.append(key)
        record = {"recordId": key, "text": "患者3月前因直肠癌行直肠癌根治术。" * 3, "sourceSystem": "interop", "timestamp": int(time.time() * 1000), "metadata": {"codec": codec}}
        value = serialize(record, SerializationContext(input_topic, MessageField.VALUE))
        headers = [("x-null", None), ("x-rep", b"1"), ("x-rep", b"2")] if i == 0 else []
        producer.produce(input_topic, key=key.encode(), value=value, headers=headers)
        if i == n // 2:
            # Undecodable (magic byte 0, then too short): a dead letter, with a null-valued and a repeated header.
            producer.produce(input_topic, key=f"{codec}-poison".encode(), value=b"\x00\x00\x01", headers=[("x-null", None), ("x-rep", b"a"), ("x-rep", b"b")])
    if producer.flush(30) != 0:
        raise SystemExit("producer did not deliver everything within 30 s")

    reader_schema = None
    if len(sys.argv) > 9:
        with open(sys.argv[9], encoding="utf-8") as f:
            reader_schema = f.read()
    deserialize = AvroDeserializer(registry, schema_str=reader_schema)
    events = read(brokers, output_topic, n, lambda m: deserialize(m.value(), SerializationContext(output_topic, MessageField.VALUE)))
    dead = read(brokers, dlt_topic, 1, lambda m: None)
    # (default=str: logical types come back as datetimes)
    print(json.dumps({"sent": keys, "events": events, "dead": dead}, ensure_ascii=False, default=str))


def read(brokers, topic, expected, decode):
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": f"interop-{uuid.uuid4()}", "isolation.level": "read_committed", "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    out = []
    deadline = time.time() + 90
    try:
        while len(out) < expected and time.time() < deadline:
            m = consumer.poll(0.5)
            if m is None:
                continue
            if m.error():
                raise SystemExit(f"reading {topic}: {m.error()}")
            value = decode(m)
            out.append(
                {
                    "key": m.key().decode() if m.key() is not None else None,
                    "value": value,
                    "headers": [[k, None if v is None else v.decode("utf-8", "replace")] for k, v in (m.headers() or [])],
                }
            )
    finally:
        consumer.close()
    return out


if __name__ == "__main__":
    main()
