/**
 * The machine's floor under the bench's end-to-end latency: the same hops
 * as a record's way through yak at a steady rate, with no work at them.
 *
 * Five Deno processes: a producer reads its stdin and sends each chunk to a
 * leader (at most 5 unanswered); the leader writes it to a file, sends it
 * to two followers, and once both have written it to their files and
 * answered, sends it on to a consumer and answers the producer; the
 * consumer writes it to its stdout. That is yak's path for `yak produce
 * --acks all` into `yak consume` (stdin, leader append, both followers'
 * copies, their acknowledgements, the consumer's fetch, stdout) without
 * the parsing, the stored lines, the checksums and the bookkeeping. Whatever
 * latency this pipeline shows is the machine's (its scheduler, its
 * wakeups between processes), and the part of yak's figure above it is
 * yak's own.
 *
 * `deno run --allow-run --allow-read --allow-write --allow-net scripts/latency_floor.ts [--rate 10000] [--seconds 10]`
 * prints the floor; `deno task bench` runs it right after its latency run
 * (and feeds `yak produce` with this module's {@link feedAtRate}).
 *
 * @module
 */
import { parseArgs } from "node:util";

/** What one floor run measured, in ms from a line written to the producer's stdin to its read from the consumer's. */
export interface FloorResult {
  count: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** A frame's most bytes: a producer's chunk of stdin is at most 64 KiB here, so this is only a guard. */
const MAX_FRAME = 16 * 1024 * 1024;
/** Unanswered chunks a producer may have at the leader (yak's producer keeps up to 5 batches a partition). */
const IN_FLIGHT = 5;
const HOST = "127.0.0.1";
const SELF = new URL(import.meta.url).pathname;
const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** Milliseconds since the epoch, with decimals: the send time carried in each line, as the bench's. */
const clock = (): number => performance.timeOrigin + performance.now();

function frame(payload: Uint8Array): Uint8Array {
  const f = new Uint8Array(4 + payload.length);
  new DataView(f.buffer).setUint32(0, payload.length);
  f.set(payload, 4);
  return f;
}

/** The frames a connection sends (a 4-byte length, then that many bytes), until it ends. */
async function* framesOf(conn: Deno.Conn): AsyncGenerator<Uint8Array> {
  let buf = new Uint8Array(1 << 16);
  let start = 0;
  let end = 0;
  while (true) {
    while (end - start >= 4) {
      const len = new DataView(buf.buffer, start, 4).getUint32(0);
      if (len > MAX_FRAME) throw new Error(`a frame of ${len} bytes: more than ${MAX_FRAME}`);
      if (end - start < 4 + len) break;
      yield buf.slice(start + 4, start + 4 + len);
      start += 4 + len;
    }
    if (start > 0) {
      buf.copyWithin(0, start, end);
      end -= start;
      start = 0;
    }
    if (end === buf.length) {
      const grown = new Uint8Array(buf.length * 2);
      grown.set(buf.subarray(0, end));
      buf = grown;
    }
    const n = await conn.read(buf.subarray(end));
    if (n === null) return;
    end += n;
  }
}

async function connect(port: number): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname: HOST, port });
  conn.setNoDelay(true);
  return conn;
}

/** Listens on a free port, says which on stdout, and serves each connection with `serve`. */
async function listenAndServe(serve: (conn: Deno.TcpConn) => Promise<void>): Promise<void> {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  console.log(listener.addr.port);
  for await (const conn of listener) {
    conn.setNoDelay(true);
    serve(conn).catch(() => conn.close());
  }
}

/** A follower: writes each frame to its file and answers it. */
function follower(dir: string): Promise<void> {
  const file = Deno.openSync(`${dir}/follower-${Deno.pid}`, { write: true, create: true, append: true });
  const ack = frame(new Uint8Array(1));
  return listenAndServe(async (conn) => {
    for await (const f of framesOf(conn)) {
      file.writeSync(f);
      await conn.write(ack);
    }
  });
}

/** The consumer: writes each frame's bytes to its stdout. */
function consumer(): Promise<void> {
  return listenAndServe(async (conn) => {
    for await (const f of framesOf(conn)) await Deno.stdout.write(f);
  });
}

/** The leader: for each frame, its file, both followers and their answers, then the consumer and the producer. */
async function leader(dir: string, followerPorts: number[], consumerPort: number): Promise<void> {
  const file = Deno.openSync(`${dir}/leader`, { write: true, create: true, append: true });
  const followers = await Promise.all(followerPorts.map(connect));
  const acks = followers.map((f) => framesOf(f));
  const toConsumer = await connect(consumerPort);
  const ack = frame(new Uint8Array(1));
  await listenAndServe(async (producer) => {
    for await (const f of framesOf(producer)) {
      file.writeSync(f);
      const out = frame(f);
      await Promise.all(followers.map((c) => c.write(out)));
      for (const a of acks) if ((await a.next()).done) throw new Error("a follower left");
      await toConsumer.write(out);
      await producer.write(ack);
    }
  });
}

/** The producer: each chunk of stdin as one frame to the leader, at most {@link IN_FLIGHT} unanswered. */
async function producer(leaderPort: number): Promise<void> {
  const conn = await connect(leaderPort);
  let inFlight = 0;
  const answered = { wake: (): void => {} };
  const answers = (async () => {
    for await (const _ of framesOf(conn)) {
      inFlight--;
      answered.wake();
    }
  })();
  const fewer = () => new Promise<void>((r) => (answered.wake = r));
  for await (const chunk of Deno.stdin.readable) {
    while (inFlight >= IN_FLIGHT) await fewer();
    inFlight++;
    await conn.write(frame(chunk));
  }
  while (inFlight > 0) await fewer();
  conn.close();
  await answers.catch(() => {});
}

/** Runs one stage (this file started by {@link floorRun}). */
async function stage(args: string[]): Promise<void> {
  const [role, dir, ...ports] = args;
  const nums = ports.map(Number);
  if (role === "follower") await follower(dir);
  else if (role === "consumer") await consumer();
  else if (role === "leader") await leader(dir, nums.slice(0, 2), nums[2]);
  else if (role === "producer") await producer(nums[0]);
  else throw new Error(`unknown stage '${role}'`);
}

/** A started stage: its process and its stdout's reader (its first line is its port, for the listening ones). */
interface Stage {
  child: Deno.ChildProcess;
  out: ReadableStreamDefaultReader<Uint8Array>;
  port: number;
}

async function startStage(args: string[], stdin: boolean, listens: boolean): Promise<Stage> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", "--allow-read", "--allow-write", SELF, "--stage", ...args],
    stdin: stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const out = child.stdout.getReader();
  let port = 0;
  if (listens) {
    const { value } = await out.read();
    port = Number(decoder.decode(value).trim());
    if (!(port > 0)) throw new Error(`the ${args[0]} stage did not say its port`);
  }
  return { child, out, port };
}

/**
 * Starts the five stages in a new temp directory, feeds the producer
 * `rate` lines of `size` bytes a second for `seconds` (after 20 warm-up
 * lines, not counted, as the bench's latency run), and measures each line
 * from its write to the producer's stdin to its read from the consumer's
 * stdout. Every stage and the directory are gone when it returns.
 */
export async function floorRun(rate: number, seconds: number, size: number): Promise<FloorResult> {
  const dir = await Deno.makeTempDir({ prefix: "yak-floor-" });
  const stages: Stage[] = [];
  try {
    const start = async (args: string[], stdin = false, listens = true) => {
      const s = await startStage(args, stdin, listens);
      stages.push(s);
      return s;
    };
    const f1 = await start(["follower", dir]);
    const f2 = await start(["follower", dir]);
    const cons = await start(["consumer", dir]);
    const lead = await start(["leader", dir, String(f1.port), String(f2.port), String(cons.port)]);
    const prod = await start(["producer", dir, String(lead.port)], true, false);
    const warm = 20;
    const total = rate * seconds;
    const latencies: number[] = [];
    let warmSeen = 0;
    let warmDone = () => {};
    const warmed = new Promise<void>((r) => (warmDone = r));
    const reading = (async () => {
      let carry = "";
      while (latencies.length < total) {
        const { value, done } = await cons.out.read();
        if (done) throw new Error(`the floor's consumer ended after ${latencies.length} of ${total} lines`);
        const at = clock();
        const lines = (carry + decoder.decode(value, { stream: true })).split("\n");
        carry = lines.pop()!;
        for (const line of lines) {
          if (line.startsWith("warm")) {
            if (++warmSeen === warm) warmDone();
          } else latencies.push(at - parseFloat(line));
        }
      }
    })();
    const writer = prod.child.stdin.getWriter();
    const padded = (text: string) => text + " " + "x".repeat(Math.max(0, size - text.length - 1)) + "\n";
    for (let i = 0; i < warm; i++) {
      await writer.write(encoder.encode(padded(`warm-${i}`)));
      await new Promise((r) => setTimeout(r, 10));
    }
    await Promise.race([warmed, reading]);
    await new Promise((r) => setTimeout(r, 200));
    await feedAtRate(writer, rate, total, (_i, at) => padded(at.toFixed(3)));
    await writer.close();
    await reading;
    latencies.sort((a, b) => a - b);
    const at = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((latencies.length * p) / 100))];
    return { count: latencies.length, p50Ms: at(50), p99Ms: at(99), maxMs: latencies[latencies.length - 1] };
  } finally {
    for (const s of stages) {
      try {
        s.child.kill("SIGKILL");
      } catch { /* already gone */ }
      await s.child.status;
      await s.out.cancel().catch(() => {});
    }
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/**
 * Feeds a producer's stdin at a steady rate: every ~1 ms it writes the
 * lines that are due by now, each made by `line(i, sendTimeMs)` (the send
 * time on the clock {@link floorRun} and the bench read receipts with).
 * Stops after `total` lines or when `stop.stopped` is set. Returns the count
 * sent. The bench feeds `yak produce` with it, and this floor's producer.
 */
export async function feedAtRate(
  writer: WritableStreamDefaultWriter<Uint8Array>,
  rate: number,
  total: number,
  line: (i: number, sentAt: number) => string,
  stop: { stopped: boolean } = { stopped: false },
): Promise<number> {
  const start = clock();
  let sent = 0;
  while (sent < total && !stop.stopped) {
    const due = Math.min(total, Math.floor(((clock() - start) / 1000) * rate));
    if (due > sent) {
      const now = clock();
      let text = "";
      for (let i = sent; i < due; i++) text += line(i, now);
      await writer.write(encoder.encode(text));
      sent = due;
    }
    await new Promise((r) => setTimeout(r, 1));
  }
  return sent;
}

if (import.meta.main) {
  if (Deno.args[0] === "--stage") {
    await stage(Deno.args.slice(1));
  } else {
    const { values } = parseArgs({
      args: Deno.args,
      strict: true,
      options: { rate: { type: "string" }, seconds: { type: "string" }, size: { type: "string" } },
    });
    const rate = Number(values.rate ?? 10_000);
    const seconds = Number(values.seconds ?? 10);
    const size = Number(values.size ?? 100);
    if (!(rate >= 1 && seconds >= 1 && size >= 24)) {
      console.error("usage: latency_floor.ts [--rate 10000 (>= 1)] [--seconds 10 (>= 1)] [--size 100 (>= 24)]");
      Deno.exit(2);
    }
    const r = await floorRun(rate, seconds, size);
    console.log(
      `latency floor (${r.count} lines at ${rate}/s): p50 ${r.p50Ms.toFixed(2)} ms, p99 ${r.p99Ms.toFixed(2)} ms, ` +
        `max ${r.maxMs.toFixed(2)} ms`,
    );
  }
}
