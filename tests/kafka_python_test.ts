/**
 * The two Python Kafka clients from Debian, unchanged, against a yak cluster:
 * kafka-python (which guesses the broker's version from ApiVersions) and
 * confluent-kafka (librdkafka). Each produces with acks=all, consumes in a
 * group, commits, and a second consumer of the group starts after the
 * commit. Skips with its reason where a client is missing; CI installs both.
 * kafka-python also authenticates with SASL/PLAIN its own way: SaslHandshake
 * v0, then the PLAIN token as a bare frame.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { python, pythonModuleMissing, skipWithout, TestCluster, withDeadline, yak } from "./harness.ts";

const KAFKA_PYTHON = `
import sys
from kafka import KafkaProducer, KafkaConsumer
boot, topic = sys.argv[1].split(","), sys.argv[2]
p = KafkaProducer(bootstrap_servers=boot, acks="all", retries=5)
for i in range(1000):
    p.send(topic, key=b"k%d" % i, value=b"v%d" % i, headers=[("h", b"x")])
p.flush(30)
p.close()
c = KafkaConsumer(topic, bootstrap_servers=boot, group_id="pyg", auto_offset_reset="earliest",
                  enable_auto_commit=False, consumer_timeout_ms=20000)
seen = set()
for m in c:
    assert m.key == b"k" + m.value[1:], (m.key, m.value)
    assert m.headers == [("h", b"x")], m.headers
    seen.add(m.value)
    if len(seen) == 1000:
        break
c.commit()
c.close()
print("consumed", len(seen))
`;

const CONFLUENT = `
import sys
from confluent_kafka import Producer, Consumer
boot, topic = sys.argv[1], sys.argv[2]
p = Producer({"bootstrap.servers": boot, "acks": "all", "enable.idempotence": True, "compression.type": "lz4"})
for i in range(1000):
    p.produce(topic, key=b"k%d" % i, value=b"v%d" % i)
left = p.flush(30)
assert left == 0, left
c = Consumer({"bootstrap.servers": boot, "group.id": "cfg", "auto.offset.reset": "earliest",
              "enable.auto.commit": False})
c.subscribe([topic])
seen = set()
while len(seen) < 1000:
    m = c.poll(20)
    assert m is not None, "no record within 20 s after %d" % len(seen)
    assert m.error() is None, m.error()
    seen.add(m.value())
c.commit(asynchronous=False)
c.close()
print("consumed", len(seen))
`;

for (
  const [name, module, pkg, script] of [
    ["kafka-python", "kafka", "python3-kafka", KAFKA_PYTHON],
    ["confluent-kafka", "confluent_kafka", "python3-confluent-kafka", CONFLUENT],
  ] as const
) {
  const missing = pythonModuleMissing(module, pkg);
  if (missing) console.log(`${name} test skipped: ${missing}`);
  Deno.test({
    name: `${name}: produce 1,000 records (acks=all), consume them in a group, commit; yak reads the same`,
    ignore: skipWithout(missing),
    fn: () =>
      withDeadline(150_000, name, async () => {
        const c = await TestCluster.start();
        try {
          const topic = `py-${module}`;
          const r = await python(script, [c.bootstrapServers, topic]);
          assert.equal(r.code, 0, r.out);
          assert.match(r.out, /consumed 1000/);
          const got = await yak([
            "consume",
            "--topic",
            topic,
            "--from-beginning",
            "--max-messages",
            "1000",
            ...c.zkFlag,
          ]);
          assert.equal(got.code, 0, got.stderr);
          assert.equal(new Set(got.stdout.trimEnd().split("\n")).size, 1000);
          // The group's commit covers everything it read: nothing is left to read.
          const group = module === "kafka" ? "pyg" : "cfg";
          const d = await yak(["groups", "--describe", group, "--json", ...c.zkFlag]);
          assert.equal(d.code, 0, d.stderr);
          const parts: { lag: number }[] = JSON.parse(d.stdout).partitions;
          assert.ok(parts.length === 3 && parts.every((p) => p.lag === 0), d.stdout);
        } finally {
          await c.stop();
        }
      }),
  });
}

const KAFKA_PYTHON_SASL = `
import sys
from kafka import KafkaProducer, KafkaConsumer
from kafka.errors import KafkaError
boot, topic, password = sys.argv[1].split(","), sys.argv[2], sys.argv[3]
sasl = dict(bootstrap_servers=boot, security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
            sasl_plain_username="any", sasl_plain_password=password,
            request_timeout_ms=15000, api_version_auto_timeout_ms=10000)
try:
    p = KafkaProducer(acks="all", retries=5, max_block_ms=10000, **sasl)
    for i in range(100):
        p.send(topic, value=b"v%d" % i)
    p.flush(30)
    p.close()
except KafkaError as e:
    print("refused", type(e).__name__)
    sys.exit(3)
c = KafkaConsumer(topic, group_id="pysasl", auto_offset_reset="earliest", consumer_timeout_ms=20000, **sasl)
seen = set()
for m in c:
    seen.add(m.value)
    if len(seen) == 100:
        break
c.close()
print("consumed", len(seen))
`;

const kafkaPythonMissing = pythonModuleMissing("kafka", "python3-kafka");
Deno.test({
  name:
    "kafka-python authenticates with SASL/PLAIN (handshake v0, then the bare token), produces and consumes; a wrong password is refused and logged without it",
  ignore: skipWithout(kafkaPythonMissing),
  fn: () =>
    withDeadline(120_000, "kafka-python sasl", async () => {
      const token = "py-s3cret-token";
      const wrong = "py-wrong-password";
      const c = await TestCluster.start({ brokers: 1, env: { YAK_AUTH_TOKEN: token } });
      try {
        const ok = await python(KAFKA_PYTHON_SASL, [c.bootstrapServers, "py-sasl", token]);
        assert.equal(ok.code, 0, ok.out);
        assert.match(ok.out, /consumed 100/);
        const bad = await python(KAFKA_PYTHON_SASL, [c.bootstrapServers, "py-sasl", wrong]);
        assert.equal(bad.code, 3, bad.out);
        const refused = bad.out.match(/refused \w+/);
        assert.ok(refused, bad.out);
        console.log(`  right token: ${ok.out.match(/consumed \d+/)![0]}; wrong password: ${refused[0]}`);
        const log = await Deno.readTextFile(join(c.dir, "broker-1", "broker.log"));
        assert.match(log, /kafka authentication failed/);
        assert.doesNotMatch(log, /kafka request header malformed/);
        assert.ok(!log.includes(token) && !log.includes(wrong), "no password in the operation log");
      } finally {
        await c.stop();
      }
    }),
});
