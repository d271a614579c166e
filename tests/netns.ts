/**
 * A yak cluster across "machines": the zookeeper and each broker in its own
 * network namespace with its own address on a bridge this module creates
 * (10.231.7.0/24, used nowhere else), every process started with `--host`.
 * The test process reaches them through the bridge's address in the root
 * namespace. Links are cut and made lossy with iptables inside the
 * namespaces (the kernel has no netem). Everything made is removed on stop:
 * deleting a namespace drops its veth and its iptables rules; the bridge and
 * the root-side veths are deleted explicitly.
 *
 * @module
 */
import { join } from "node:path";
import { Connection } from "../src/protocol/connection.ts";
import type { Lease } from "../src/protocol/messages.ts";
import { Proc } from "./harness.ts";

const SUBNET = "10.231.7";

/** Why this machine cannot run the namespace tests, or null when it can. */
export function netnsUnavailable(): string | null {
  if (Deno.build.os !== "linux") return "network namespaces need Linux";
  try {
    if (Deno.uid() !== 0) return "network namespaces need root";
  } catch {
    return "cannot tell the user id";
  }
  for (const [cmd, args] of [["ip", ["-V"]], ["iptables", ["--version"]]] as const) {
    try {
      if (!new Deno.Command(cmd, { args: [...args], stdout: "null", stderr: "null" }).outputSync().success) {
        return `${cmd} does not run`;
      }
    } catch {
      return `${cmd} is not installed (Debian: iproute2, iptables)`;
    }
  }
  return null;
}

async function sh(cmd: string, args: string[], allowFail = false): Promise<void> {
  const out = await new Deno.Command(cmd, { args, stdout: "null", stderr: "piped" }).output();
  if (!out.success && !allowFail) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
}

/** One host: a namespace with one address. */
export interface Host {
  name: string;
  ns: string;
  ip: string;
}

/** The zookeeper and brokers, each in its own namespace. */
export class NetCluster {
  readonly dir: string;
  readonly tag: string;
  readonly hosts = new Map<string, Host>();
  readonly brokers = new Map<number, Proc>();
  zk!: Proc;
  readonly #bridge: string;
  readonly #veths: string[] = [];

  private constructor(dir: string, tag: string) {
    this.dir = dir;
    this.tag = tag;
    this.#bridge = `ykbr${tag}`;
  }

  /** Makes the bridge and the hosts, then starts the zookeeper and `brokers` brokers; waits for 3 in sync. */
  static async start(brokers = 3): Promise<NetCluster> {
    const tag = Math.floor(Math.random() * 0xffff).toString(16).padStart(4, "0");
    const dir = await Deno.makeTempDir({ prefix: "yak-netns-" });
    const c = new NetCluster(dir, tag);
    try {
      await sh("ip", ["link", "add", c.#bridge, "type", "bridge"]);
      await sh("ip", ["addr", "add", `${SUBNET}.254/24`, "dev", c.#bridge]);
      await sh("ip", ["link", "set", c.#bridge, "up"]);
      await c.#addHost("zk", 10);
      for (let i = 1; i <= brokers; i++) await c.#addHost(`b${i}`, i);
      c.zk = new Proc("zookeeper", ["zookeeper", "--host", c.ip("zk"), "--port", "2181", "--data", dir], {
        wrap: ["ip", "netns", "exec", c.hosts.get("zk")!.ns],
      });
      await c.zk.waitFor(/^zookeeper listening on/);
      await Promise.all(Array.from({ length: brokers }, (_, i) => c.startBroker(i + 1)));
      await c.waitFor((l) => l.leaderId !== null && l.isr.length === brokers, 30_000);
    } catch (err) {
      await c.stop();
      throw err;
    }
    return c;
  }

  async #addHost(name: string, n: number): Promise<void> {
    const ns = `yak-${this.tag}-${name}`;
    const outside = `yk${this.tag}${name}`.slice(0, 15);
    await sh("ip", ["netns", "add", ns]);
    this.hosts.set(name, { name, ns, ip: `${SUBNET}.${n}` });
    await sh("ip", ["link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", ns]);
    this.#veths.push(outside);
    await sh("ip", ["link", "set", outside, "master", this.#bridge]);
    await sh("ip", ["link", "set", outside, "up"]);
    await sh("ip", ["netns", "exec", ns, "ip", "addr", "add", `${SUBNET}.${n}/24`, "dev", "eth0"]);
    await sh("ip", ["netns", "exec", ns, "ip", "link", "set", "eth0", "up"]);
    await sh("ip", ["netns", "exec", ns, "ip", "link", "set", "lo", "up"]);
  }

  ip(host: string): string {
    return this.hosts.get(host)!.ip;
  }

  get zkAddr(): string {
    return `${this.ip("zk")}:2181`;
  }

  /** `--zookeeper ADDR` for clients in the root namespace. */
  get zkFlag(): string[] {
    return ["--zookeeper", this.zkAddr];
  }

  /** Starts (or restarts) broker `id` on its host. */
  async startBroker(id: number): Promise<Proc> {
    const host = this.hosts.get(`b${id}`)!;
    const proc = new Proc(`broker-${id}`, [
      "broker",
      "--id",
      String(id),
      "--host",
      host.ip,
      "--port",
      "9092",
      "--zookeeper",
      this.zkAddr,
      "--data",
      this.dir,
    ], { wrap: ["ip", "netns", "exec", host.ns] });
    this.brokers.set(id, proc);
    await proc.waitFor(/^broker \d+ listening on/);
    return proc;
  }

  async lease(): Promise<Lease> {
    const conn = await Connection.open(this.ip("zk"), 2181, { connectTimeoutMs: 2000 });
    try {
      return (await conn.request({ type: "metadata" }, 2000)).lease as Lease;
    } finally {
      conn.close();
    }
  }

  async waitFor(pred: (l: Lease) => boolean, timeoutMs = 15_000): Promise<Lease> {
    const deadline = Date.now() + timeoutMs;
    let last: Lease | null = null;
    while (Date.now() < deadline) {
      try {
        last = await this.lease();
        if (pred(last)) return last;
      } catch { /* lossy or cut: ask again */ }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`lease condition not met in ${timeoutMs} ms; last ${JSON.stringify(last)}`);
  }

  /** Drops all traffic between two hosts, both ways (rules inside the first host's namespace). */
  async cut(a: string, b: string): Promise<void> {
    const ns = this.hosts.get(a)!.ns;
    await sh("ip", ["netns", "exec", ns, "iptables", "-I", "INPUT", "-s", this.ip(b), "-j", "DROP"]);
    await sh("ip", ["netns", "exec", ns, "iptables", "-I", "OUTPUT", "-d", this.ip(b), "-j", "DROP"]);
  }

  /** Removes every rule of a host's namespace (heals its cuts and losses). */
  async heal(host: string): Promise<void> {
    const ns = this.hosts.get(host)!.ns;
    await sh("ip", ["netns", "exec", ns, "iptables", "-F", "INPUT"]);
    await sh("ip", ["netns", "exec", ns, "iptables", "-F", "OUTPUT"]);
  }

  /** Drops a random share of every packet each host receives: every link becomes lossy. */
  async lossy(probability: number): Promise<void> {
    for (const h of this.hosts.values()) {
      await sh("ip", [
        "netns",
        "exec",
        h.ns,
        "iptables",
        "-I",
        "INPUT",
        "-m",
        "statistic",
        "--mode",
        "random",
        "--probability",
        String(probability),
        "-j",
        "DROP",
      ]);
    }
  }

  topicsDir(id: number): string {
    return join(this.dir, `broker-${id}`, "topics");
  }

  /** Stops every process, deletes the namespaces, veths and bridge, and the directory. */
  async stop(): Promise<void> {
    await Promise.all([...this.brokers.values()].map((p) => p.stop()));
    await this.zk?.stop();
    for (const h of this.hosts.values()) await sh("ip", ["netns", "del", h.ns], true);
    for (const v of this.#veths) await sh("ip", ["link", "del", v], true);
    await sh("ip", ["link", "del", this.#bridge], true);
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}
