/**
 * The command line itself, with real processes: flags (version, aliases,
 * negative numbers, typos, repeats, one exit code for misuse), clients that
 * point at the wrong kind of process, one connect deadline with one piece of
 * advice (and no wait at all when nothing listens), a producer facing a dead zookeeper, `yak kill --leader` that never
 * signals a broker of another cluster, and the data root every command finds
 * the same way.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { YAK_VERSION } from "../src/version.ts";
import { OpLog } from "../src/op_log.ts";
import {
  eventually,
  freePortRange,
  MAIN,
  PERMS,
  Proc,
  run,
  type RunResult,
  seqText,
  TestCluster,
  withDeadline,
  yak,
} from "./harness.ts";

/** A usage error: exit 1, one line (no stack), and the given text. */
function usageError(res: RunResult, pattern: RegExp, what: string): void {
  assert.equal(res.code, 1, `${what}: exit ${res.code}\n${res.stderr}`);
  assert.match(res.stderr, pattern, what);
  assert.doesNotMatch(res.stderr, /^\s+at /m, `${what}: a stack trace`);
  assert.equal(res.stdout, "", `${what}: stdout`);
}

Deno.test("flags: --version, usage errors exit 1 with a hint, Kafka's spellings and negative numbers are taken", async () => {
  await withDeadline(120_000, "flags", async () => {
    const version = await yak(["--version"]);
    assert.equal(version.code, 0);
    assert.match(version.stdout, new RegExp(`^yak ${YAK_VERSION.replaceAll(".", "\\.")} \\(deno \\d+\\.\\d+\\.\\d+`));
    assert.equal((await yak(["-V"])).stdout, version.stdout);

    // No command is a usage error too (exit 1, usage on stderr); asking for help is not.
    const none = await yak([]);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /usage: yak <command>/);
    assert.equal((await yak(["--help"])).code, 0);
    // `yak help produce` is produce's help (before: the top level's); an unknown one is said.
    const helpProduce = await yak(["help", "produce"]);
    assert.equal(helpProduce.code, 0);
    assert.equal(helpProduce.stdout, (await yak(["produce", "--help"])).stdout);
    const helpNope = await yak(["help", "nope"]);
    assert.equal(helpNope.code, 1);
    assert.match(helpNope.stderr, /^yak: unknown command 'nope'/);

    const cases: [string[], RegExp][] = [
      [["prodcue"], /^yak: unknown command 'prodcue'; did you mean 'yak produce'\?/],
      [["produce", "--topic", "t", "--mesage", "x"], /unknown flag --mesage; did you mean --message\?/],
      [["consume", "--topic", "t", "--from-begining"], /unknown flag --from-begining; did you mean --from-beginning\?/],
      [["produce", "--topic", "a", "--topic", "b", "--message", "x"], /--topic was given more than once \('a', 'b'\)/],
      [["consume", "--topic", "t", "--offset", "3", "--offset", "4"], /--offset was given more than once/],
      [["produce", "--topic"], /--topic needs a value/],
      [["produce", "--topic", "t", "--quiet=yes"], /--quiet takes no value/],
      [["consume", "--topic", "t", "--offset", "5", "--from-beginning"], /--offset or --from-beginning, not both/],
      [["consume", "--topic", "t", "--offset", "-5", "--group", "g"], /--offset does not go with --group/],
      [["consume", "--topic", "t", "--offset", "soon"], /--offset must be earliest, latest, an offset N or -N/],
      [["consume", "--topic", "t", "--format", "%q"], /unknown field %q/],
      [["consume", "--topic", "t", "--topic-regex", "t.*"], /--topic or --topic-regex, not both/],
      [
        ["produce", "--topic", "t", "extra"],
        /^yak produce: unexpected argument 'extra' \(every value goes after its --flag\)/,
      ],
      [
        ["produce", "--topic", "t", "--message", "x", "--tls-ca", new URL("../deno.json", import.meta.url).pathname],
        /^yak produce: --tls-ca .*deno\.json: not a PEM file/,
      ],
      [["produce", "--topic", "t", "--zookeeper", "127.0.0.1:1", "--bootstrap", "127.0.0.1:2"], /not both/],
      [["status", "--watch", "--watch=1"], /--watch takes no value/],
      [["kill"], /say which broker/],
      [["consume", "--topic", "t", "--bootstrap-sever", "127.0.0.1:1"], /did you mean --bootstrap-server\?/],
      [["status", "--bootstrap-server", "127.0.0.1:1"], /yak status asks the zookeeper, give --zookeeper HOST:PORT/],
    ];
    const results = await Promise.all(cases.map(([args]) => yak(args, { timeoutMs: 20_000 })));
    cases.forEach(([args], i) => usageError(results[i], cases[i][1], `yak ${args.join(" ")}`));
  });
});

Deno.test("clients: the wrong kind of process, one connect deadline, the advice said once", async () => {
  await withDeadline(150_000, "clients", async () => {
    const cluster = await TestCluster.start({ brokers: 1 });
    try {
      const broker = `127.0.0.1:${cluster.brokerPorts.get(1)}`;
      // --bootstrap-server (Kafka's name) and --acks -1 (Kafka's all) are taken as they are.
      const kafkaStyle = await yak(["produce", "--topic", "k", "--bootstrap-server", broker, "--acks", "-1"], {
        stdin: "one\n",
      });
      assert.equal(kafkaStyle.code, 0, kafkaStyle.stderr);

      // --zookeeper pointed at a broker: every command says so and names the flag to use.
      const atBroker = ["--zookeeper", broker];
      const commands: string[][] = [
        ["produce", "--topic", "t", "--message", "x"],
        ["consume", "--topic", "t", "--timeout-ms", "500"],
        ["consume", "--topic", "t", "--group", "g"],
        ["status"],
        ["topics", "--list"],
        ["groups", "--list"],
        ["kill", "--leader", "--data", cluster.dir],
      ];
      const wrong = await Promise.all(commands.map((c) => yak([...c, ...atBroker], { timeoutMs: 20_000 })));
      commands.forEach((c, i) => {
        const what = `yak ${c[0]} --zookeeper <broker>`;
        usageError(
          wrong[i],
          new RegExp(`is a broker \\(broker 1\\), not the zookeeper: use --bootstrap ${broker}`),
          what,
        );
        assert.doesNotMatch(wrong[i].stderr, /not iterable|Cannot read properties|undefined/, what);
      });
      const atZk = await yak(["produce", "--topic", "t", "--message", "x", "--bootstrap", cluster.zkAddr]);
      usageError(atZk, /is the zookeeper, not a broker: use --zookeeper/, "--bootstrap <zookeeper>");
      // A broker's Kafka port given to yak's own tools as a broker: it names its native port, which they use
      // (issue 25 §6: kafka-topics.sh's --bootstrap-server habit).
      const kafka = `127.0.0.1:${cluster.kafkaPorts.get(1)}`;
      const viaKafka = await yak(["produce", "--topic", "viakafka", "--message", "x", "--bootstrap-server", kafka]);
      assert.equal(viaKafka.code, 0, viaKafka.stderr);
      const readBack = await yak([
        "consume",
        "--topic",
        "viakafka",
        "--from-beginning",
        "--exit-at-end",
        "--bootstrap",
        kafka,
      ]);
      assert.equal(readBack.stdout, "x\n", readBack.stderr);
      // As the zookeeper: told at once (not after the connect deadline) which port is theirs. The deadline is
      // long, so a tool that waited it out fails the test by its message.
      const atKafka = [["status", "--zookeeper", kafka]];
      const kafkaStarted = Date.now();
      const toKafka = await Promise.all(
        atKafka.map((c) => yak([...c, "--connect-timeout-ms", "30000"], { timeoutMs: 40_000 })),
      );
      atKafka.forEach((c, i) =>
        usageError(
          toKafka[i],
          new RegExp(
            `port ${cluster.kafkaPorts.get(1)} is broker 1's Kafka port, for Kafka clients \\(--bootstrap-server\\); ` +
              `yak's own tools use its native port: --bootstrap ${broker}`,
          ),
          `yak ${c[0]} at the Kafka port`,
        )
      );
      assert.match(toKafka[0].stderr, /, or --zookeeper with the zookeeper's address/);
      assert.ok(Date.now() - kafkaStarted < 25_000, "the tools stopped before the connect deadline");
      // The broker is still whole.
      assert.equal(cluster.brokers.get(1)!.exited, false);

      // Nothing listens (every address refuses): every command gives the advice once, at once, not after the
      // 10 s connect deadline it keeps for silence and for a cluster that is starting.
      const nowhere = ["--zookeeper", "127.0.0.1:1", "--connect-timeout-ms", "10000"];
      const took: number[] = [];
      const dead = await Promise.all(commands.map(async (c, i) => {
        const started = Date.now();
        const res = await yak([...c, ...nowhere], { timeoutMs: 20_000 });
        took[i] = Date.now() - started;
        return res;
      }));
      for (let i = 0; i < commands.length; i++) {
        const what = `yak ${commands[i][0]} with no cluster`;
        const res = dead[i];
        assert.equal(res.code, 1, `${what}: ${res.stderr}`);
        assert.equal(res.stderr.trimEnd().split("\n").length, 1, `${what}: one line, no retrying: ${res.stderr}`);
        const last = res.stderr.trimEnd();
        assert.match(last, /cannot connect to (the zookeeper at )?127\.0\.0\.1:1 \(connection refused\)/, what);
        assert.equal(last.split("is the cluster running? start one with 'yak cluster'").length, 2, `${what}: ${last}`);
        assert.doesNotMatch(res.stderr, /connection refused: Connection refused|os error/, what);
        // Seven at once on two cores: each well under the 10 s deadline (one alone takes about 0.3 s).
        assert.ok(took[i] < 3000, `${what}: ${took[i]} ms`);
      }
      console.log(`with no cluster, 7 commands at once: ${took.join(", ")} ms`);
      const started = Date.now();
      const alone = await yak(["status", ...nowhere]);
      const aloneMs = Date.now() - started;
      console.log(`yak status with no cluster, alone: ${aloneMs} ms`);
      assert.equal(alone.code, 1, alone.stderr);
      assert.ok(aloneMs < 1500, `yak status with no cluster took ${aloneMs} ms`);
    } finally {
      await cluster.stop();
    }
  });
});

Deno.test("a dead zookeeper: the producer backs off, says which zookeeper is silent, and finishes once it is back", async () => {
  await withDeadline(120_000, "zookeeper down", async () => {
    const cluster = await TestCluster.start({ brokers: 1 });
    let producer: Proc | null = null;
    try {
      const broker = `127.0.0.1:${cluster.brokerPorts.get(1)}`;
      producer = new Proc("producer", ["produce", "--topic", "z", "--bootstrap", broker], { stdin: true });
      await producer.write(seqText(10));
      await eventually(
        async () => {
          const res = await yak([
            "consume",
            "--topic",
            "z",
            "--offset",
            "earliest",
            "--exit-at-end",
            "--bootstrap",
            broker,
          ]);
          return res.stdout.split("\n").length > 10;
        },
        20_000,
        "the first records stored",
      );
      cluster.zk.kill("SIGSTOP");
      const frozenAt = Date.now();
      // Once the broker has noticed, its lease is over: what comes next cannot be acknowledged.
      await cluster.brokers.get(1)!.waitFor(/zookeeper_unreachable/, 15_000);
      await producer.write(seqText(10, 11));
      await producer.waitFor(/zookeeper at 127\.0\.0\.1:\d+ has not answered/, 15_000);
      // 4 s of a silent zookeeper: the producer retries, slowly.
      await new Promise((r) => setTimeout(r, Math.max(0, 4000 - (Date.now() - frozenAt))));
      cluster.zk.kill("SIGCONT");
      await producer.closeStdin();
      const status = await producer.status;
      assert.equal(status.code, 0, producer.lines.join("\n"));
      assert.match(producer.lines.join("\n"), /20 records \(31 bytes\) acknowledged/);
      const log = await Deno.readTextFile(join(cluster.dir, "broker-1", "broker.log"));
      const registrations = log.split("\n").filter((l) => l.includes('"producer_registered"')).length;
      // It was 15,231 registrations in 30 s: now about one a second.
      assert.ok(registrations <= 15, `${registrations} producer registrations while the zookeeper was silent`);
    } finally {
      producer?.kill("SIGKILL");
      await producer?.status;
      cluster.zk.kill("SIGCONT");
      await cluster.stop();
    }
  });
});

Deno.test("yak kill --leader: only the leader the zookeeper names, of this data root; never a guess", async () => {
  await withDeadline(150_000, "kill", async () => {
    const a = await TestCluster.start({ brokers: 2 });
    let b: TestCluster | null = null;
    try {
      b = await TestCluster.start({ brokers: 2 });
      const leaderA = (await a.lease()).leaderId!;
      // The zookeeper of cluster A, the data root of cluster B: refused, nothing signalled.
      const crossed = await yak(["kill", "--leader", ...a.zkFlag, "--data", b.dir]);
      assert.equal(crossed.code, 1, crossed.stderr);
      assert.match(crossed.stderr, new RegExp(`the zookeeper at ${a.zkAddr} names broker ${leaderA}`));
      assert.match(crossed.stderr, /another cluster's data; nothing was signalled/);
      for (const c of [a, b]) for (const p of c.brokers.values()) assert.equal(p.exited, false);

      // Refusals after the zookeeper answered say the broker was its choice: no pid file, then a stale one.
      const empty = await Deno.makeTempDir({ prefix: "yak-kill-" });
      try {
        const chosen = `broker ${leaderA} was chosen as the leader per the zookeeper at ${a.zkAddr}`;
        const noPid = await yak(["kill", "--leader", ...a.zkFlag, "--data", empty]);
        assert.equal(noPid.code, 1, noPid.stderr);
        // The chosen broker, then the question (before: '...with --data DIR?; broker N was chosen...').
        assert.match(
          noPid.stderr,
          new RegExp(`no pid file at .*; ${chosen}: is broker ${leaderA} running with --data`),
        );
        const exited = new Deno.Command("true", { stdin: "null", stdout: "null", stderr: "null" }).spawn();
        await exited.status;
        await Deno.mkdir(join(empty, `broker-${leaderA}`));
        await Deno.writeTextFile(join(empty, `broker-${leaderA}`, "broker.pid"), `${exited.pid}\n`);
        const stale = await yak(["kill", "--leader", ...a.zkFlag, "--data", empty]);
        assert.equal(stale.code, 1, stale.stderr);
        assert.match(
          stale.stderr,
          new RegExp(`is stale \\(pid ${exited.pid} has exited\\); nothing was signalled; ${chosen}$`, "m"),
        );
        // Pid 1 is init's, said as such (before: 'does not hold a pid').
        await Deno.writeTextFile(join(empty, `broker-${leaderA}`, "broker.pid"), "1\n");
        const init = await yak(["kill", "--leader", ...a.zkFlag, "--data", empty]);
        assert.equal(init.code, 1, init.stderr);
        assert.match(init.stderr, /holds pid 1 \(the system's init\), not a broker's/);
      } finally {
        await Deno.remove(empty, { recursive: true });
      }

      // A zookeeper that does not answer: no fallback to the lease file.
      b.zk.kill("SIGSTOP");
      const silent = await yak(["kill", "--leader", ...b.zkFlag, "--data", b.dir, "--connect-timeout-ms", "1000"]);
      b.zk.kill("SIGCONT");
      assert.equal(silent.code, 1, silent.stderr);
      assert.match(silent.stderr, new RegExp(`the zookeeper at ${b.zkAddr} does not answer`));
      for (const p of b.brokers.values()) assert.equal(p.exited, false);

      // The right pair: the leader goes, and the message names the zookeeper and the data root.
      const killed = await yak(["kill", "--leader", ...a.zkFlag, "--data", a.dir]);
      assert.equal(killed.code, 0, killed.stderr);
      assert.match(
        killed.stdout,
        new RegExp(
          `^sent SIGKILL to broker ${leaderA} \\(pid \\d+, the leader of epoch \\d+ per the zookeeper at ${a.zkAddr}; data ${a.dir}\\)`,
        ),
      );
      await a.brokers.get(leaderA)!.status;
    } finally {
      await b?.stop();
      await a.stop();
    }
  });
});

Deno.test("the data root: --data, else YAK_DATA, else ./data, the same for kill, logs and cluster, printed absolute", async () => {
  await withDeadline(120_000, "data root", async () => {
    const cluster = await TestCluster.start({ brokers: 1 });
    const cwd = await Deno.makeTempDir({ prefix: "yak-cwd-" });
    try {
      const parent = join(cluster.dir, "..");
      const relative = cluster.dir.slice(parent.length + 1);
      // YAK_DATA, or --data relative to the working directory: the same file, named absolute.
      const byEnv = await yak(["logs", "zookeeper"], { env: { YAK_DATA: cluster.dir } });
      assert.equal(byEnv.code, 0, byEnv.stderr);
      assert.match(byEnv.stderr, new RegExp(`^yak logs: ${join(cluster.dir, "zookeeper", "zookeeper.log")}$`, "m"));
      const byFlag = await yak(["logs", "broker", "1", "--data", relative], { cwd: parent });
      assert.equal(byFlag.code, 0, byFlag.stderr);
      assert.match(byFlag.stderr, new RegExp(`^yak logs: ${join(cluster.dir, "broker-1", "broker.log")}$`, "m"));
      // The broker's directory name names it too; a name that is neither is refused with the two forms.
      const byDirName = await yak(["logs", "broker-1"], { env: { YAK_DATA: cluster.dir } });
      assert.equal(byDirName.code, 0, byDirName.stderr);
      assert.ok(byFlag.stdout.length > 0 && byDirName.stdout.startsWith(byFlag.stdout), "the same log, read later");
      const unknown = await yak(["logs", "broker-x"], { env: { YAK_DATA: cluster.dir } });
      assert.equal(unknown.code, 1);
      assert.match(unknown.stderr, /say which log.*: 'yak logs zookeeper' or 'yak logs broker N'/);
      const typo = await yak(["logs", "zookeper"], { env: { YAK_DATA: cluster.dir } });
      assert.equal(typo.code, 1);
      assert.match(typo.stderr, /say which log \(did you mean 'zookeeper'\?\): 'yak logs zookeeper' or/);
      // The default is ./data of the working directory (the repository's through deno task and ./yak).
      const missing = await yak(["logs", "zookeeper"], { cwd, env: { YAK_DATA: "" } });
      assert.equal(missing.code, 1);
      assert.match(
        missing.stderr,
        new RegExp(`no operation log at ${join(cwd, "data", "zookeeper", "zookeeper.log")}`),
      );
      const noPid = await yak(["kill", "--broker", "7"], { env: { YAK_DATA: cluster.dir } });
      assert.equal(noPid.code, 1);
      assert.match(noPid.stderr, new RegExp(`no pid file at ${join(cluster.dir, "broker-7", "broker.pid")}`));
      // A broker that found its data root through YAK_DATA (as ./yak starts it), in a directory with no data/
      // of its own: yak kill knows it for the broker of that root.
      const byEnvBroker = new Proc("broker-2", [
        "broker",
        "--id",
        "2",
        "--port",
        "0",
        "--kafka-port",
        "-1",
        "--min-insync-replicas",
        "1",
        ...cluster.zkFlag,
      ], { cwd, env: { YAK_DATA: cluster.dir } });
      try {
        await byEnvBroker.waitFor(/^broker 2 listening on /, 30_000);
        const killed = await yak(["kill", "--broker", "2", "--signal", "TERM"], { env: { YAK_DATA: cluster.dir } });
        assert.equal(killed.code, 0, killed.stderr);
        assert.match(
          killed.stdout,
          new RegExp(`^sent SIGTERM to broker 2 \\(pid ${byEnvBroker.pid}; data ${cluster.dir}\\)`),
        );
        assert.equal((await withDeadline(20_000, "broker 2 stops", () => byEnvBroker.status)).code, 0);
      } finally {
        await byEnvBroker.stop();
      }
      // yak cluster says where its data is, absolute, though given relative.
      const base = freePortRange(2);
      const clusterProc = new Proc("cluster", [
        "cluster",
        "--brokers",
        "1",
        "--data",
        "here",
        "--zookeeper-port",
        String(base),
        "--base-port",
        String(base + 1),
        "--http-port",
        "0",
      ], { cwd });
      try {
        const ready = await clusterProc.waitFor(
          new RegExp(`^\\[cluster\\] ready: .*data in ${join(cwd, "here")};`),
          30_000,
        );
        // Which address is for yak's tools, and which for Kafka clients.
        assert.match(
          ready[0],
          new RegExp(
            `\\(yak tools: --bootstrap 127\\.0\\.0\\.1:${base + 1} or --zookeeper 127\\.0\\.0\\.1:${base}; ` +
              `Kafka clients: --bootstrap-server 127\\.0\\.0\\.1:${base + 101}\\)`,
          ),
        );
      } finally {
        await clusterProc.stop();
      }
      assert.equal((await clusterProc.status).code, 0, clusterProc.lines.slice(-5).join("\n"));
    } finally {
      await cluster.stop();
      await Deno.remove(cwd, { recursive: true });
    }
  });
});

Deno.test("yak logs --follow goes on in a rotated operation log's new file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "yak-logs-rotate-" });
  let follower: Proc | null = null;
  try {
    await Deno.mkdir(join(dir, "broker-1"));
    const log = new OpLog(join(dir, "broker-1", "broker.log"), "broker-1", false, undefined, {
      maxBytes: 600,
      keep: 2,
    });
    log.write("first", { n: 0 });
    follower = new Proc("logs", ["logs", "broker", "1", "--follow", "--data", dir]);
    await follower.waitFor(/ first n=0$/, 15_000);
    // Past 600 bytes several times: the file it opened is renamed broker.log.1, then .2, then dropped.
    for (let n = 1; n <= 30; n++) log.write("more", { n, pad: "y".repeat(60) });
    log.close();
    assert.ok((await Deno.stat(join(dir, "broker-1", "broker.log.2"))).isFile, "rotated");
    await follower.waitFor(/ more n=30 pad=y+$/, 15_000);
    const seen = follower.lines.filter((l) => / more n=\d+ /.test(l)).map((l) => Number(l.match(/ n=(\d+) /)![1]));
    assert.ok(seen.length > 0 && seen.every((n, k) => k === 0 || n > seen[k - 1]), `in order: ${seen.join(",")}`);
  } finally {
    follower?.kill("SIGINT");
    await follower?.status;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("yak --help and --version into a full device say so in one line, no stack trace", async () => {
  for (const flag of ["--help", "--version"]) {
    const cmd = [Deno.execPath(), "run", ...PERMS, MAIN, flag].map((a) => `'${a}'`).join(" ");
    const res = await run("sh", ["-c", `${cmd} > /dev/full`]);
    assert.equal(res.code, 1, res.stderr);
    // Before: "error: Uncaught (in promise) Error: No space left on device" and a trace into main.ts.
    assert.equal(res.stderr.trim(), "yak: No space left on device (os error 28)");
  }
});

Deno.test("a host name that does not resolve is said at once, with the name to check, not 'is the cluster running?'", async () => {
  // Before: the zookeeper path retried for its whole deadline (10 s) and blamed a cluster not running.
  const produced = await yak(["produce", "--topic", "t", "--message", "x", "--zookeeper", "nohost.invalid:2181"], {
    timeoutMs: 30_000,
  });
  assert.equal(produced.code, 1);
  assert.match(produced.stderr, /cannot resolve the zookeeper's host 'nohost\.invalid' \(.*\); check the host name/);
  const consumed = await yak(["consume", "--topic", "t", "--bootstrap", "nohost.invalid:9092"], { timeoutMs: 30_000 });
  assert.equal(consumed.code, 1);
  assert.match(consumed.stderr, /cannot resolve the host 'nohost\.invalid' \(.*\); check the host name/);
  assert.doesNotMatch(produced.stderr + consumed.stderr, /is the cluster running/);
});

Deno.test("arguments that are not UTF-8 are refused, naming the flag, not stored as U+FFFD", async () => {
  // Real bytes on the command line, as a shell passes them: Deno's own spawn only passes UTF-8 text.
  const yakCmd = [Deno.execPath(), "run", ...PERMS, MAIN].map((a) => `'${a}'`).join(" ");
  const cluster = "--bootstrap 127.0.0.1:1 --connect-timeout-ms 300";
  const cases: [string, RegExp][] = [
    [
      `produce --topic t --message "$(printf 'a\\377b')"`,
      /--message is not valid UTF-8 .*stdin, which keeps any bytes/,
    ],
    [`produce --topic t --message ok --key "$(printf 'k\\300')"`, /--key is not valid UTF-8/],
    [`produce --topic t --message ok --header "$(printf 'h=\\377')"`, /--header is not valid UTF-8/],
    [`produce --topic t --message ok --transactional-id "$(printf 'x\\377')"`, /--transactional-id is not valid UTF-8/],
    [`consume --topic t --group "$(printf 'g\\377')"`, /--group is not valid UTF-8/],
    [`consume --topic t --format "$(printf '%%v\\377')"`, /--format is not valid UTF-8/],
  ];
  for (const [args, pattern] of cases) {
    const res = await run("sh", ["-c", `${yakCmd} ${args} ${cluster}`], { timeoutMs: 20_000 });
    // Before: exit 0 with "a\uFFFDb" stored (here: a connection error, as nothing listens).
    usageError({ ...res, stdout: new TextDecoder().decode(res.stdout) }, pattern, args);
    assert.equal(res.stderr.trim().split("\n").length, 1, res.stderr);
  }
  // U+FFFD given as such is refused too: the program cannot tell it from bytes that were replaced.
  usageError(
    await yak(["produce", "--topic", "t", "--message", "a\uFFFDb", ...cluster.split(" ")]),
    /--message is not valid UTF-8/,
    "U+FFFD",
  );
});

Deno.test("an empty --bootstrap or --zookeeper is refused, never replaced by the default zookeeper", async () => {
  // Before: `--bootstrap ,` and `--bootstrap=` fell back to $YAK_ZOOKEEPER (here a port nothing listens on).
  const env = { YAK_ZOOKEEPER: "127.0.0.1:1" };
  const cases: [string[], RegExp][] = [
    [
      ["produce", "--topic", "t", "--message", "x", "--bootstrap", ","],
      /--bootstrap ',' is not HOST:PORT.*names no broker/,
    ],
    [["produce", "--topic", "t", "--message", "x", "--bootstrap="], /--bootstrap '' is not HOST:PORT.*names no broker/],
    [["consume", "--topic", "t", "--bootstrap", " , "], /--bootstrap ' , ' is not HOST:PORT/],
    [["topics", "--list", "--bootstrap", ","], /--bootstrap ',' is not HOST:PORT/],
    [["groups", "--list", "--bootstrap="], /--bootstrap '' is not HOST:PORT/],
    [["produce", "--topic", "t", "--message", "x", "--zookeeper="], /'' is not HOST:PORT/],
    [["status", "--zookeeper", ","], /',' is not HOST:PORT/],
    [["topics", "--list", "--zookeeper="], /'' is not HOST:PORT/],
  ];
  const results = await Promise.all(cases.map(([args]) => yak(args, { env, timeoutMs: 20_000 })));
  cases.forEach(([args, pattern], i) => usageError(results[i], pattern, `yak ${args.join(" ")}`));
});

Deno.test("ports past 65535 that other flags derive are refused up front; a clash on --http-port names --http-port", async () => {
  await withDeadline(90_000, "derived ports", async () => {
    const dir = await Deno.makeTempDir({ prefix: "yak-ports-" });
    const zkPort = freePortRange(1);
    try {
      const cases: [string[], RegExp][] = [
        // Before: the cluster started, then broker 1 died with "Invalid port (out of range): 65600".
        [
          ["cluster", "--base-port", "65500", "--zookeeper-port", String(zkPort), "--http-port", "0", "--data", dir],
          /--base-port 65500 puts broker 3's Kafka port at 65602 \(--base-port \+ 102\), past 65535: give a --base-port of at most 65433/,
        ],
        [
          ["broker", "--id", "5", "--port", "65500", "--zookeeper", `127.0.0.1:${zkPort}`, "--data", dir],
          /--port 65500 puts the Kafka port at 65600 \(--port \+ 100\), past 65535: give --kafka-port/,
        ],
        [
          ["broker", "--id", "70000", "--zookeeper", `127.0.0.1:${zkPort}`, "--data", dir],
          /--id 70000 puts the default port at 79091 \(9091 \+ --id\), past 65535: give --port/,
        ],
      ];
      for (const [args, pattern] of cases) usageError(await yak(args, { timeoutMs: 20_000 }), pattern, args.join(" "));

      // The metrics port of broker 1 (--http-port + 1) is taken: the advice is --http-port, not the other two.
      const base = freePortRange(4);
      const http = freePortRange(3);
      const held = Deno.listen({ hostname: "127.0.0.1", port: http + 1 });
      try {
        const res = await yak(
          ["cluster", "--brokers", "1", "--base-port", String(base), "--zookeeper-port", String(base + 2)]
            .concat(["--http-port", String(http), "--data", dir]),
          { timeoutMs: 20_000 },
        );
        usageError(
          res,
          new RegExp(
            `port ${http + 1} \\(broker 1's metrics port, --http-port \\+ 1\\) is in use: .*another --http-port$`,
            "m",
          ),
          "http port clash",
        );
      } finally {
        held.close();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});

Deno.test("yak consume --format: a lone % or \\ and an unknown escape are refused, not printed as they are", async () => {
  // Before: '%' and '%v %' printed the % literally, and '\q' printed 'q'.
  const cases: [string, RegExp][] = [
    ["%", /^yak consume: --format: a lone % at the end \(fields: %t .*%% for a percent\)$/m],
    ["%v %", /--format: a lone % at the end/],
    ["%s %", /--format: unknown field %s .*kcat's %s \(the value\) is %v here/],
    ["%v\\q", /^yak consume: --format: unknown escape \\q \(escapes: \\n \\t \\r \\0, and \\\\ for a backslash\)$/m],
    ["%v\\", /--format: a lone \\ at the end/],
  ];
  const results = await Promise.all(
    cases.map(([format]) =>
      yak(["consume", "--topic", "t", "--format", format, "--bootstrap", "127.0.0.1:1", "--connect-timeout-ms", "300"])
    ),
  );
  cases.forEach(([format, pattern], i) => usageError(results[i], pattern, `--format '${format}'`));
});
