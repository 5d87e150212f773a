"""Drives Confluent's own Python serde and registry client for eventline's
interop tests. One JSON command as argv[1]; one JSON object on stdout.

With SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO ("user:password") in the
environment (not in argv, which ps shows), the registry client sends it as
basic.auth.user.info. A registry error in any command is printed as
{"error": {...}}, as register describes.

Commands:
  {"mode": "serialize", "registry": URL, "topic": T, "schema": S, "record": {...}}
      registers S under <T>-<record full name> through AvroSerializer
      (auto.register.schemas) and prints {"hex": <framed bytes>, "schema_id": N}
  {"mode": "deserialize", "registry": URL, "topic": T, "hex": H}
      decodes H with AvroDeserializer (writer schema fetched by id) and prints
      {"record": {...}}
  {"mode": "register", "registry": URL, "subject": SUBJ, "schema": S}
      prints {"id": N} or {"error": {"http": STATUS, "code": CODE, "message": M}}
  {"mode": "register_refs", "registry": URL,
   "schemas": [{"subject": SUBJ, "schema": S, "references": [{"name": N, "subject": R}]}]}
      registers each schema in order with its references, each reference at
      its subject's latest version (what the Maven plugin does), and prints
      {"registered": [{"subject": SUBJ, "id": N, "version": V}]}
  {"mode": "serialize_many", "registry": URL, "topic": T, "latest": BOOL,
   "subject": SUBJ (latest only), "schemas": {TYPE: {"schema": S, "references": [...]}} (else),
   "records": [{"type": TYPE, "record": {...}}]}
      latest: AvroSerializer with use.latest.version (the subject's newest
      schema, e.g. a union of references; the union branch given by the
      record's type); else one serializer per event schema with its
      references, auto.register.schemas off (the id is looked up under
      <T>-<TYPE>). Prints {"hex": [...]}
  {"mode": "cloudevents", "registry": URL, "brokers": B, "topic": T, "partitions": P, "count": N}
      reads N records of T from the start with confluent_kafka's Consumer,
      turns each into a CloudEvent with the CloudEvents SDK's Kafka binding
      (binary content mode, from_binary; the SDK validates the required
      attributes), decodes its data with AvroDeserializer, and prints
      {"events": [{"attributes": {...}, "record": {...}}]}
"""
import datetime
import json
import os
import sys
import time
import uuid

from confluent_kafka.schema_registry import Schema, SchemaReference, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry import topic_record_subject_name_strategy
from confluent_kafka.serialization import MessageField, SerializationContext


def plain(v):
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [plain(x) for x in v]
    if isinstance(v, datetime.datetime):
        return int(v.timestamp() * 1000)
    if isinstance(v, uuid.UUID):
        return str(v)
    return v


def main():
    cmd = json.loads(sys.argv[1])
    conf = {"url": cmd["registry"]}
    if os.environ.get("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"):
        conf["basic.auth.user.info"] = os.environ["SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"]
    client = SchemaRegistryClient(conf)
    try:
        run(cmd, client)
    except SchemaRegistryError as e:
        print(json.dumps({"error": {"http": e.http_status_code, "code": e.error_code, "message": e.error_message}}))


def run(cmd, client):
    mode = cmd["mode"]
    if mode == "serialize":
        ser = AvroSerializer(
            client,
            cmd["schema"],
            conf={"auto.register.schemas": True, "subject.name.strategy": topic_record_subject_name_strategy},
        )
        rec = dict(cmd["record"])
        for k, v in list(rec.items()):
            if k.endswith("_at") and isinstance(v, int):
                rec[k] = datetime.datetime.fromtimestamp(v / 1000, tz=datetime.timezone.utc)
        b = ser(rec, SerializationContext(cmd["topic"], MessageField.VALUE))
        print(json.dumps({"hex": b.hex(), "schema_id": int.from_bytes(b[1:5], "big")}))
    elif mode == "deserialize":
        de = AvroDeserializer(client)
        rec = de(bytes.fromhex(cmd["hex"]), SerializationContext(cmd["topic"], MessageField.VALUE))
        print(json.dumps({"record": plain(rec)}))
    elif mode == "cloudevents":
        print(json.dumps({"events": read_cloudevents(cmd, client)}))
    elif mode == "register":
        sid = client.register_schema(cmd["subject"], Schema(cmd["schema"], "AVRO"))
        print(json.dumps({"id": sid}))
    elif mode == "register_refs":
        out = []
        for s in cmd["schemas"]:
            refs = [SchemaReference(r["name"], r["subject"], client.get_latest_version(r["subject"]).version)
                    for r in s.get("references", [])]
            schema = Schema(s["schema"], "AVRO", refs)
            sid = client.register_schema(s["subject"], schema)
            reg = client.lookup_schema(s["subject"], schema)
            out.append({"subject": s["subject"], "id": sid, "version": reg.version})
        print(json.dumps({"registered": out}))
    elif mode == "serialize_many":
        ctx = SerializationContext(cmd["topic"], MessageField.VALUE)
        out = []
        if cmd["latest"]:
            ser = AvroSerializer(client, None, conf={
                "auto.register.schemas": False, "use.latest.version": True,
                "subject.name.strategy": lambda _ctx, _name: cmd["subject"]})
            for r in cmd["records"]:
                # fastavro's tuple notation names the union branch.
                out.append(ser((r["type"], timestamps(r["record"])), ctx).hex())
        else:
            sers = {}
            for name, s in cmd["schemas"].items():
                refs = [SchemaReference(x["name"], x["subject"], client.get_latest_version(x["subject"]).version)
                        for x in s.get("references", [])]
                sers[name] = AvroSerializer(client, Schema(s["schema"], "AVRO", refs), conf={
                    "auto.register.schemas": False, "subject.name.strategy": topic_record_subject_name_strategy})
            for r in cmd["records"]:
                out.append(sers[r["type"]](timestamps(r["record"]), ctx).hex())
        print(json.dumps({"hex": out}))
    else:
        raise SystemExit("unknown mode " + mode)


def timestamps(rec):
    """Fields named *_at hold epoch milliseconds; fastavro wants datetimes."""
    rec = dict(rec)
    for k, v in list(rec.items()):
        if k.endswith("_at") and isinstance(v, int):
            rec[k] = datetime.datetime.fromtimestamp(v / 1000, tz=datetime.timezone.utc)
    return rec


def read_cloudevents(cmd, client):
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
    from cloudevents.core.bindings.kafka import KafkaMessage, from_binary
    from cloudevents.core.formats.json import JSONFormat
    from cloudevents.core.v1.event import CloudEvent

    consumer = Consumer({"bootstrap.servers": cmd["brokers"], "group.id": "cloudevents-interop",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(cmd["topic"], p, OFFSET_BEGINNING) for p in range(cmd["partitions"])])
    de = AvroDeserializer(client)
    out = []
    deadline = time.monotonic() + 60
    try:
        while len(out) < cmd["count"]:
            if time.monotonic() > deadline:
                raise SystemExit("read %d of %d records" % (len(out), cmd["count"]))
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                raise SystemExit(str(msg.error()))
            km = KafkaMessage(headers={k: v for k, v in (msg.headers() or [])}, key=msg.key(), value=msg.value())
            event = from_binary(km, JSONFormat(), CloudEvent)
            data = event.get_data()
            # The JSON format hands a body that is not JSON back as str when
            # it happens to be valid UTF-8, else as bytes: both are the value.
            if isinstance(data, str):
                data = data.encode("utf-8")
            attrs = dict(event.get_attributes())
            attrs["time"] = attrs["time"].isoformat() if "time" in attrs else None
            out.append({"attributes": attrs,
                        "record": plain(de(data, SerializationContext(cmd["topic"], MessageField.VALUE)))})
    finally:
        consumer.close()
    return out


if __name__ == "__main__":
    main()
