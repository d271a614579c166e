import assert from "node:assert/strict";
import { join } from "node:path";
import { LOCK_FILE, lockDataDir } from "./data_lock.ts";
import { YakError } from "../errors.ts";

Deno.test("a data directory is locked once: a second lock is refused naming the holder's pid, and works after release", async () => {
  const dir = join(await Deno.makeTempDir({ prefix: "yak-lock-" }), "broker-1");
  try {
    const lock = await lockDataDir(dir);
    assert.equal((await Deno.readTextFile(join(dir, LOCK_FILE))).trim(), String(Deno.pid));
    await assert.rejects(() => lockDataDir(dir), (err: unknown) => {
      assert.ok(err instanceof YakError);
      assert.equal(err.code, "BROKER_ID_IN_USE");
      assert.match(err.message, new RegExp(`in use by another process \\(pid ${Deno.pid},`));
      return true;
    });
    // The refused attempt left the holder's pid in place.
    assert.equal((await Deno.readTextFile(join(dir, LOCK_FILE))).trim(), String(Deno.pid));
    await lock.release();
    await lock.release(); // idempotent
    const again = await lockDataDir(dir);
    await again.release();
  } finally {
    await Deno.remove(join(dir, ".."), { recursive: true });
  }
});

Deno.test("the lock dies with its holder: after kill -9 of the holding process the directory can be locked again", async () => {
  const dir = join(await Deno.makeTempDir({ prefix: "yak-lock-" }), "broker-2");
  const module = new URL("./data_lock.ts", import.meta.url).href;
  const holder = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `const { lockDataDir } = await import(${JSON.stringify(module)});
       await lockDataDir(${JSON.stringify(dir)});
       console.log("locked");
       setTimeout(() => {}, 60_000);`,
    ],
    stdout: "piped",
    stderr: "inherit",
    stdin: "null",
  }).spawn();
  try {
    const reader = holder.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let out = "";
    while (!out.includes("locked")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the holder exited before locking: ${out}`);
      out += value;
    }
    await assert.rejects(() => lockDataDir(dir), new RegExp(`pid ${holder.pid},`));
    holder.kill("SIGKILL");
    await holder.status;
    await reader.cancel();
    const lock = await lockDataDir(dir);
    await lock.release();
  } finally {
    try {
      holder.kill("SIGKILL");
    } catch { /* gone */ }
    await holder.status;
    await Deno.remove(join(dir, ".."), { recursive: true });
  }
});
