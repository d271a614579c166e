import assert from "node:assert/strict";
import { join } from "node:path";
import { OpLog, type OpLogFile } from "./op_log.ts";
import { canMountTmpfs } from "../tests/harness.ts";

/** A file that takes `room` more bytes, then fails like a full disk (a short write, then ENOSPC). */
class FullDisk implements OpLogFile {
  bytes: number[] = [];
  room: number;
  truncateFails = false;
  constructor(room: number) {
    this.room = room;
  }
  writeSync(p: Uint8Array): number {
    if (this.room <= 0) throw new Error("No space left on device (os error 28)");
    const n = Math.min(p.length, this.room);
    this.bytes.push(...p.subarray(0, n));
    this.room -= n;
    return n;
  }
  truncateSync(len = 0): void {
    if (this.truncateFails) throw new Error("I/O error");
    this.bytes.length = len;
  }
  statSync() {
    return { size: this.bytes.length };
  }
  close() {}
  get text(): string {
    return new TextDecoder().decode(new Uint8Array(this.bytes));
  }
}

function parsedLines(text: string): { event: string }[] {
  return text.split("\n").filter((l) => l).map((l) => JSON.parse(l));
}

Deno.test("op log: an entry that does not fit is cut back, and the next one is whole", () => {
  const file = new FullDisk(150);
  const log = new OpLog("fake", "test", false, file);
  log.write("first", { n: 1 });
  log.write("second", { pad: "x".repeat(200) }); // torn by the full disk, then cut back
  assert.equal(log.dropped, 1);
  file.room = 1000; // space returns
  log.write("third", { n: 3 });
  assert.deepEqual(parsedLines(file.text).map((e) => e.event), ["first", "third"]);
});

Deno.test("op log: when the torn entry cannot be cut, the next entry still starts on its own line", () => {
  const file = new FullDisk(100);
  file.truncateFails = true;
  const log = new OpLog("fake", "test", false, file);
  log.write("first");
  log.write("second", { pad: "x".repeat(200) });
  file.room = 1000;
  log.write("third");
  const lines = file.text.split("\n");
  assert.equal(JSON.parse(lines[0]).event, "first");
  assert.ok(lines[1].startsWith('{"ts"') && !lines[1].endsWith("}"), "the torn fragment stays on its own line");
  assert.equal(JSON.parse(lines[2]).event, "third");
  assert.equal(lines[3], "");
});

Deno.test({
  name: "op log on a real full disk (a 64 KiB tmpfs): every line in the file parses",
  ignore: !canMountTmpfs(),
  fn: async () => {
    const mnt = await Deno.makeTempDir({ prefix: "yak-oplog-" });
    const mounted = await new Deno.Command("mount", { args: ["-t", "tmpfs", "-o", "size=64k", "tmpfs", mnt] })
      .output();
    try {
      assert.ok(mounted.success);
      const log = new OpLog(join(mnt, "broker.log"), "test", false);
      // Entries of odd sizes, so the disk fills part way through one.
      for (let i = 0; i < 2000; i++) log.write("entry", { i, pad: "y".repeat(i % 97) });
      assert.ok(log.dropped > 0, "the disk filled up");
      log.close();
      const entries = parsedLines(await Deno.readTextFile(join(mnt, "broker.log")));
      assert.ok(entries.length > 100);
      // Whole entries only; some were dropped when they did not fit, later smaller ones may have.
      const numbers = entries.map((e) => (e as unknown as { i: number }).i);
      assert.equal(numbers.length + log.dropped, 2000);
      numbers.forEach((n, k) => assert.ok(k === 0 || n > numbers[k - 1]));
    } finally {
      await new Deno.Command("umount", { args: [mnt] }).output();
      await Deno.remove(mnt, { recursive: true });
    }
  },
});

Deno.test("op log: rotated past its size, the oldest file beyond `keep` dropped, every entry whole", async () => {
  const dir = await Deno.makeTempDir({ prefix: "yak-oplog-rotate-" });
  try {
    const path = join(dir, "broker.log");
    const log = new OpLog(path, "test", false, undefined, { maxBytes: 400, keep: 2 });
    for (let i = 0; i < 40; i++) log.write("entry", { i, pad: "x".repeat(40) });
    log.close();
    const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    assert.deepEqual(names, ["broker.log", "broker.log.1", "broker.log.2"]);
    const read = async (name: string) => parsedLines(await Deno.readTextFile(join(dir, name)));
    const files = [await read("broker.log.2"), await read("broker.log.1"), await read("broker.log")];
    for (const name of names) assert.ok((await Deno.stat(join(dir, name))).size <= 400, `${name} within its size`);
    // Oldest to newest, consecutive, ending at the last entry: only whole files of the oldest went.
    const numbers = files.flat().map((e) => (e as unknown as { i: number }).i);
    assert.equal(numbers.at(-1), 39);
    assert.deepEqual(numbers, numbers.map((_, k) => numbers[0] + k));
    assert.ok(numbers[0] > 0, "the oldest entries were dropped with the oldest file");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
