/**
 * The two Python Kafka clients from Debian, unchanged, against a yak cluster:
 * kafka-python (which guesses the broker's version from ApiVersions) and
 * confluent-kafka (librdkafka). Each produces with acks=all, consumes in a
 * group, commits, and a second consumer of the group starts after the
 * commit. Skips with its reason where a client is missing; CI installs both.
 */
import assert from "node:assert/strict";
import { run, TestCluster, withDeadline, yak } from "./harness.ts";

const PYTHON = "/usr/bin/python3";

function moduleMissing(module: string, pkg: string): string | null {
  try {
    const out = new Deno.Command(PYTHON, { args: ["-c", `import ${module}`], stdout: "null", stderr: "null" })
      .outputSync();
    return out.code === 0 ? null : `${pkg} is not installed (apt-get install ${pkg})`;
  } catch {
    return `${PYTHON} is missing`;
  }
}

async function python(script: string, args: string[]): Promise<{ code: number; out: string }> {
  const r = await run(PYTHON, ["-c", script, ...args], { timeoutMs: 90_000 });
  return { code: r.code, out: new TextDecoder().decode(r.stdout) + r.stderr };
}

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
  const missing = moduleMissing(module, pkg);
  if (missing) console.log(`${name} test skipped: ${missing}`);
  Deno.test({
    name: `${name}: produce 1,000 records (acks=all), consume them in a group, commit; yak reads the same`,
    ignore: missing !== null,
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
