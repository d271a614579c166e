/**
 * kcat (librdkafka) against a yak cluster, unchanged: produce and consume
 * both ways with `yak produce`/`yak consume`, keys, headers and binary values,
 * every compression codec, and a balanced consumer group that resumes from
 * its commits. Skips with its reason where kcat is missing; CI installs it.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  kcatMissing,
  MAIN,
  PERMS,
  Proc,
  run,
  type RunOptions,
  seqText,
  skipWithout,
  TestCluster,
  withDeadline,
  yak,
} from "./harness.ts";

const missing = kcatMissing();
if (missing) console.log(`kcat tests skipped: ${missing}`);

/** The first `n` records of a topic as `yak consume --format json` prints them. */
// deno-lint-ignore no-explicit-any
async function consumeJson(c: TestCluster, topic: string, n: number): Promise<any[]> {
  const out = await yak(
    ["consume", "--topic", topic, "--from-beginning", "--max-messages", String(n), "--format", "json", ...c.zkFlag],
  );
  assert.equal(out.code, 0, out.stderr);
  return out.stdout.trimEnd().split("\n").map((l) => JSON.parse(l));
}

function kcat(args: string[], opts: RunOptions = {}): ReturnType<typeof run> {
  return run("kcat", args, opts);
}

const text = (b: Uint8Array) => new TextDecoder().decode(b);

/** Waits until `group` has `n` members (so records produced next are read by their final owners). */
async function waitForMembers(c: TestCluster, group: string, n: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  let members = 0;
  while (Date.now() < deadline) {
    const d = await yak(["groups", "--describe", group, "--json", ...c.zkFlag]);
    const g = d.code === 0 ? JSON.parse(d.stdout) : null;
    members = g?.members.length ?? 0;
    if (members === n && g.state === "Stable") return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`group ${group} has ${members} members, not ${n}`);
}
const sortedNumbers = (s: string) => s.trimEnd().split("\n").filter((l) => l !== "").map(Number).sort((a, b) => a - b);

Deno.test({
  name: "kcat -P 100,000 lines, yak consume reads them; yak produce, kcat -C reads them; keys, headers, binary",
  ignore: skipWithout(missing),
  fn: () =>
    withDeadline(180_000, "kcat round trip", async () => {
      const c = await TestCluster.start();
      try {
        const b = ["-b", c.bootstrapServers];
        const p = await kcat(["-P", ...b, "-t", "fromkcat", "-X", "acks=all"], { stdin: seqText(100_000) });
        assert.equal(p.code, 0, p.stderr);
        const got = await yak([
          "consume",
          "--topic",
          "fromkcat",
          "--from-beginning",
          "--max-messages",
          "100000",
          ...c.zkFlag,
        ]);
        assert.equal(got.code, 0, got.stderr);
        assert.deepEqual(sortedNumbers(got.stdout), Array.from({ length: 100_000 }, (_, i) => i + 1));

        const y = await yak(["produce", "--topic", "fromyak", ...c.zkFlag], { stdin: seqText(50_000) });
        assert.equal(y.code, 0, y.stderr);
        const k = await kcat(["-C", ...b, "-t", "fromyak", "-o", "beginning", "-e", "-q"]);
        assert.equal(k.code, 0, k.stderr);
        assert.deepEqual(sortedNumbers(text(k.stdout)), Array.from({ length: 50_000 }, (_, i) => i + 1));

        // Keys and headers, kcat -> yak (and the keys land where Kafka's partitioner puts them).
        const kh = await kcat(["-P", ...b, "-t", "kh", "-K", ":", "-H", "trace=abc", "-H", "bin=x"], {
          stdin: "user-1:hello\nuser-2:world\n",
        });
        assert.equal(kh.code, 0, kh.stderr);
        const recs = (await consumeJson(c, "kh", 2)).sort((a, b) => a.key < b.key ? -1 : 1);
        assert.deepEqual(recs.map((r) => [r.key, r.value]), [["user-1", "hello"], ["user-2", "world"]]);
        assert.deepEqual(recs[0].headers, [{ key: "trace", value: "abc" }, { key: "bin", value: "x" }]);
        // The default format prints the values alone, headers or not.
        const plain = await yak(["consume", "--topic", "kh", "--from-beginning", "--max-messages", "2", ...c.zkFlag]);
        assert.equal(plain.code, 0, plain.stderr);
        assert.deepEqual(plain.stdout.trimEnd().split("\n").sort(), ["hello", "world"]);

        // Keys and headers, yak -> kcat.
        const yk = await yak(["produce", "--topic", "kh2", "--key-separator", "=", ...c.zkFlag], {
          stdin: "k1=v1\nk2=v2\n",
        });
        assert.equal(yk.code, 0, yk.stderr);
        const kk = await kcat(["-C", ...b, "-t", "kh2", "-o", "beginning", "-e", "-q", "-f", "%k=%s\\n"]);
        assert.equal(kk.code, 0, kk.stderr);
        assert.deepEqual(text(kk.stdout).trimEnd().split("\n").sort(), ["k1=v1", "k2=v2"]);

        // A binary value, byte-exact both ways (kcat sends a file as one message).
        const bytes = new Uint8Array(256).map((_, i) => i);
        const file = join(c.dir, "binary.bin");
        await Deno.writeFile(file, bytes);
        const pb = await kcat(["-P", ...b, "-t", "bin", "-p", "0", file]);
        assert.equal(pb.code, 0, pb.stderr);
        assert.deepEqual(Uint8Array.fromBase64((await consumeJson(c, "bin", 1))[0].valueB64), bytes);
        const kb = await kcat(["-C", ...b, "-t", "bin", "-p", "0", "-o", "beginning", "-c", "1", "-q", "-f", "%s"]);
        assert.equal(kb.code, 0, kb.stderr);
        assert.deepEqual(kb.stdout, bytes);
      } finally {
        await c.stop();
      }
    }),
});

Deno.test({
  name: "yak produce --header: kcat -C and yak consume see the headers; they count toward max.message.bytes",
  ignore: skipWithout(missing),
  fn: () =>
    withDeadline(90_000, "yak headers to kcat", async () => {
      const c = await TestCluster.start({ brokers: 1 });
      try {
        const b = ["-b", c.bootstrapServers];
        const flags = ["--header", "trace=abc", "--header", "k2=v2", "--header", "eq=a=b"];
        const p = await yak([
          "produce",
          "--topic",
          "hdr",
          ...flags,
          "--message",
          "hello",
          "--message",
          "again",
          ...c.zkFlag,
        ]);
        assert.equal(p.code, 0, p.stderr);
        // Header keys and values count in the summary: 8 + 4 + 5 header bytes and 5 value bytes per record.
        assert.match(p.stderr, /2 records \(44 bytes\) acknowledged to 'hdr'/);

        const k = await kcat(["-C", ...b, "-t", "hdr", "-o", "beginning", "-e", "-q", "-f", "%h %s\\n"]);
        assert.equal(k.code, 0, k.stderr);
        console.log(`  kcat -f '%h %s\\n':\n${text(k.stdout).trimEnd().replace(/^/gm, "    ")}`);
        assert.deepEqual(text(k.stdout).trimEnd().split("\n"), [
          "trace=abc,k2=v2,eq=a=b hello",
          "trace=abc,k2=v2,eq=a=b again",
        ]);

        const recs = await consumeJson(c, "hdr", 2);
        assert.deepEqual(recs.map((r) => r.value), ["hello", "again"]);
        for (const r of recs) {
          assert.deepEqual(r.headers, [{ key: "trace", value: "abc" }, { key: "k2", value: "v2" }, {
            key: "eq",
            value: "a=b",
          }]);
        }

        // A header without '=' is a usage error naming the flag; nothing is sent.
        const bad = await yak(["produce", "--topic", "hdr", "--header", "trace", "--message", "x", ...c.zkFlag]);
        assert.equal(bad.code, 1, bad.stderr);
        assert.match(bad.stderr, /--header 'trace' must be KEY=VALUE/);
        assert.doesNotMatch(bad.stderr, /\n\s+at /, "no stack trace");

        // Header bytes count toward the record's size: 5 value + 3 key + 95 value bytes + 2 of framing for the header > 100.
        const made = await yak(["topics", "--create", "tiny", "--config", "max.message.bytes=100", ...c.zkFlag]);
        assert.equal(made.code, 0, made.stderr);
        const big = await yak([
          "produce",
          "--topic",
          "tiny",
          "--header",
          `big=${"h".repeat(95)}`,
          "--message",
          "hello",
          ...c.zkFlag,
        ]);
        assert.equal(big.code, 1, big.stderr);
        assert.match(big.stderr, /message 1 \(105 bytes\) is larger than topic 'tiny' takes \(100 bytes/);
      } finally {
        await c.stop();
      }
    }),
});

Deno.test({
  name: "kcat produces with gzip, snappy, lz4 and zstd; yak stores and serves the records",
  ignore: skipWithout(missing),
  fn: () =>
    withDeadline(120_000, "compression", async () => {
      const c = await TestCluster.start();
      try {
        for (const codec of ["gzip", "snappy", "lz4", "zstd"]) {
          const topic = `z-${codec}`;
          const p = await kcat(["-P", "-b", c.bootstrapServers, "-t", topic, "-z", codec, "-X", "linger.ms=50"], {
            stdin: seqText(20_000),
          });
          assert.equal(p.code, 0, `${codec}: ${p.stderr}`);
          const got = await yak([
            "consume",
            "--topic",
            topic,
            "--from-beginning",
            "--max-messages",
            "20000",
            ...c.zkFlag,
          ]);
          assert.equal(got.code, 0, `${codec}: ${got.stderr}`);
          assert.deepEqual(sortedNumbers(got.stdout), Array.from({ length: 20_000 }, (_, i) => i + 1), codec);
        }
      } finally {
        await c.stop();
      }
    }),
});

Deno.test({
  name: "kcat -G: two members split the partitions and commit; a restart resumes from the commits",
  ignore: skipWithout(missing),
  fn: () =>
    withDeadline(180_000, "kcat group", async () => {
      const c = await TestCluster.start({ partitions: 4 });
      try {
        const b = c.bootstrapServers;
        const made = await yak(["topics", "--create", "gt", "--partitions", "4", ...c.zkFlag]);
        assert.equal(made.code, 0, made.stderr);
        const spawn = () =>
          new Deno.Command("kcat", {
            args: [
              "-b",
              b,
              "-G",
              "kg",
              "-X",
              "auto.offset.reset=earliest",
              "-X",
              "auto.commit.interval.ms=100",
              "-f",
              "%p %s\\n",
              "-u",
              "-q",
              "gt",
            ],
            stdout: "piped",
            stderr: "piped",
          }).spawn();
        const a = spawn();
        const d = spawn();
        const seen = new Map<string, Set<number>>();
        const pump = async (name: string, child: Deno.ChildProcess) => {
          const set = new Set<number>();
          seen.set(name, set);
          let carry = "";
          for await (const chunk of child.stdout) {
            const parts = (carry + new TextDecoder().decode(chunk)).split("\n");
            carry = parts.pop()!;
            for (const line of parts) set.add(Number(line.split(" ")[0]) * 1_000_000 + Number(line.split(" ")[1]));
          }
        };
        const pumps = [pump("a", a), pump("d", d)];
        await waitForMembers(c, "kg", 2);
        // Keyed, so murmur2 spreads them over the four partitions (keyless ones stick to one per batch).
        const keyed = Array.from({ length: 4_000 }, (_, i) => `${i + 1}:${i + 1}\n`).join("");
        const p = await kcat(["-P", "-b", b, "-t", "gt", "-K", ":"], { stdin: keyed });
        assert.equal(p.code, 0, p.stderr);
        const total = () => [...seen.values()].reduce((n, s) => n + s.size, 0);
        const deadline = Date.now() + 60_000;
        while (total() < 4_000 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
        // Both members read, and no partition was read by both (each value once).
        const values = [...seen.values()].flatMap((s) => [...s].map((v) => v % 1_000_000));
        assert.equal(values.length, 4_000, "every record read once across the group");
        const partsOf = (name: string) => new Set([...seen.get(name)!].map((v) => Math.floor(v / 1_000_000)));
        assert.ok(partsOf("a").size > 0 && partsOf("d").size > 0, "both members got partitions");
        for (const p of partsOf("a")) assert.ok(!partsOf("d").has(p), `partition ${p} read by one member`);
        // Let the last commits land, then stop both (kcat leaves the group and commits on SIGTERM... and SIGINT).
        await new Promise((r) => setTimeout(r, 500));
        a.kill("SIGINT");
        d.kill("SIGINT");
        await Promise.all([a.status, d.status, ...pumps]);

        const described = await yak(["groups", "--describe", "kg", "--json", ...c.zkFlag]);
        assert.equal(described.code, 0, described.stderr);
        const g = JSON.parse(described.stdout);
        const parts: { lag: number }[] = g.partitions;
        assert.ok(
          parts.length === 4 && parts.every((p) => p.lag === 0),
          `commits cover everything: ${described.stdout}`,
        );

        // New records; a restarted member reads only those.
        const more = await kcat(["-P", "-b", b, "-t", "gt"], { stdin: seqText(100, 5_001) });
        assert.equal(more.code, 0, more.stderr);
        const again = await kcat([
          "-b",
          b,
          "-G",
          "kg",
          "-X",
          "auto.offset.reset=earliest",
          "-q",
          "-e",
          "gt",
        ], { timeoutMs: 60_000 });
        assert.deepEqual(sortedNumbers(text(again.stdout)), Array.from({ length: 100 }, (_, i) => 5_001 + i));
      } finally {
        await c.stop();
      }
    }),
});

Deno.test({
  name: "one group mixes a kcat -G member and a yak consume --group member: disjoint partitions, every record once",
  ignore: skipWithout(missing),
  fn: () =>
    withDeadline(120_000, "mixed group", async () => {
      const c = await TestCluster.start({ partitions: 4 });
      // librdkafka does not create the topics it subscribes to (nor does Kafka by default).
      const made = await yak(["topics", "--create", "mt", "--partitions", "4", ...c.zkFlag]);
      assert.equal(made.code, 0, made.stderr);
      const kc = new Deno.Command("kcat", {
        args: [
          "-b",
          c.bootstrapServers,
          "-G",
          "mix",
          "-X",
          "auto.offset.reset=earliest",
          "-u",
          "-q",
          "-f",
          "%p %s\\n",
          "mt",
        ],
        stdout: "piped",
        stderr: "null",
      }).spawn();
      const ym = new Proc("yak-member", [
        "consume",
        "--topic",
        "mt",
        "--group",
        "mix",
        "--from-beginning",
        "--format",
        "json",
        ...c.zkFlag,
      ]);
      const kcatLines: string[] = [];
      const pump = (async () => {
        let carry = "";
        for await (const chunk of kc.stdout) {
          const parts = (carry + new TextDecoder().decode(chunk)).split("\n");
          carry = parts.pop()!;
          kcatLines.push(...parts);
        }
      })();
      try {
        // Both members in, then the records.
        await waitForMembers(c, "mix", 2);
        for (let part = 0; part < 4; part++) {
          const p = await yak(["produce", "--topic", "mt", "--partition", String(part), ...c.zkFlag], {
            stdin: seqText(1_000, 1 + part * 1_000),
          });
          assert.equal(p.code, 0, p.stderr);
        }
        const yakRecords = () => ym.lines.filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
        const until = Date.now() + 30_000;
        while (kcatLines.length + yakRecords().length < 4_000 && Date.now() < until) {
          await new Promise((r) => setTimeout(r, 100));
        }
        const kParts = new Set(kcatLines.map((l) => Number(l.split(" ")[0])));
        const yParts = new Set(yakRecords().map((r) => r.partition as number));
        assert.ok(kParts.size > 0 && yParts.size > 0, `both read: kcat ${[...kParts]}, yak ${[...yParts]}`);
        for (const part of kParts) assert.ok(!yParts.has(part), `partition ${part} read by one member`);
        const values = [...kcatLines.map((l) => Number(l.split(" ")[1])), ...yakRecords().map((r) => Number(r.value))];
        assert.deepEqual(values.sort((a, b) => a - b), Array.from({ length: 4_000 }, (_, i) => i + 1));
      } finally {
        try {
          kc.kill("SIGINT");
        } catch { /* gone */ }
        await kc.status;
        await pump;
        await ym.stop();
        await c.stop();
      }
    }),
});

Deno.test({
  name: "with --auth-token, kcat authenticates with SASL/PLAIN (the token as password); a wrong password is refused",
  ignore: skipWithout(missing),
  fn: () =>
    withDeadline(90_000, "kafka sasl", async () => {
      const token = "kafka-s3cret";
      const c = await TestCluster.start({ brokers: 1, env: { YAK_AUTH_TOKEN: token } });
      try {
        const sasl = (password: string) => [
          "-b",
          c.bootstrapServers,
          "-X",
          "security.protocol=SASL_PLAINTEXT",
          "-X",
          "sasl.mechanisms=PLAIN",
          "-X",
          "sasl.username=any",
          "-X",
          `sasl.password=${password}`,
        ];
        const p = await kcat(["-P", ...sasl(token), "-t", "secure"], { stdin: seqText(100) });
        assert.equal(p.code, 0, p.stderr);
        const k = await kcat(["-C", ...sasl(token), "-t", "secure", "-o", "beginning", "-e", "-q"]);
        assert.equal(k.code, 0, k.stderr);
        assert.deepEqual(sortedNumbers(text(k.stdout)), Array.from({ length: 100 }, (_, i) => i + 1));
        const bad = await kcat(["-L", ...sasl("wrong"), "-m", "2"], { timeoutMs: 20_000 });
        assert.notEqual(bad.code, 0, "a wrong password gets no metadata");
        const plain = await kcat(["-L", "-b", c.bootstrapServers, "-m", "2"], { timeoutMs: 20_000 });
        assert.notEqual(plain.code, 0, "no SASL gets no metadata");
        const log = await Deno.readTextFile(join(c.dir, "broker-1", "broker.log"));
        assert.ok(!log.includes(token) && !log.includes("wrong"), "no password in the operation log");
      } finally {
        await c.stop();
      }
    }),
});

Deno.test({
  name: "a key, value or line that starts with a byte order mark keeps it, through kcat and yak produce alike",
  ignore: skipWithout(missing),
  fn: () =>
    withDeadline(60_000, "bom", async () => {
      const c = await TestCluster.start({ brokers: 1 });
      try {
        const bom = new Uint8Array([0xef, 0xbb, 0xbf]);
        const bytes = (s: string) => new TextEncoder().encode(s);
        const join = (...parts: Uint8Array[]) => {
          const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
          let at = 0;
          for (const p of parts) out.set(p, (at += p.length) - p.length);
          return out;
        };
        // The key "\uFEFFa" was stored as "a": one key with "a" (a compacted topic kept only one of the two).
        const made = await yak(["topics", "--create", "bom", "--partitions", "1", ...c.zkFlag]);
        assert.equal(made.code, 0, made.stderr);
        const put = await kcat(["-P", "-b", c.bootstrapServers, "-t", "bom", "-K:"], {
          stdin: join(bom, bytes("a:"), bom, bytes("v1\na:v2\n")),
          timeoutMs: 20_000,
        });
        assert.equal(put.code, 0, put.stderr);
        const lines = await yak(["produce", "--topic", "bom", ...c.zkFlag], { stdin: join(bom, bytes("line\n")) });
        assert.equal(lines.code, 0, lines.stderr);
        const got = await kcat(["-C", "-b", c.bootstrapServers, "-t", "bom", "-e", "-f", "%k|%s\\n"], {
          timeoutMs: 20_000,
        });
        assert.equal(got.code, 0, got.stderr);
        assert.deepEqual(got.stdout, join(bom, bytes("a|"), bom, bytes("v1\na|v2\n|"), bom, bytes("line\n")));
        // Compared as bytes: a decoder would drop the first mark itself.
        const shown = await run(Deno.execPath(), [
          "run",
          ...PERMS,
          MAIN,
          "consume",
          "--topic",
          "bom",
          "--from-beginning",
          "--exit-at-end",
          ...c.zkFlag,
        ]);
        assert.deepEqual(shown.stdout, join(bom, bytes("v1\nv2\n"), bom, bytes("line\n")));
      } finally {
        await c.stop();
      }
    }),
});
