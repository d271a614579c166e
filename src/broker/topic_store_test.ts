/**
 * TopicStore when a topic's files cannot be opened at first (a full disk):
 * opened again under the record's id, once however many ask at the same
 * time, with its topic.json.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { TopicStore } from "./topic_store.ts";

async function withStore(fn: (store: TopicStore, dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "yak-topic-store-" });
  const store = await TopicStore.open(join(dir, "topics"), { segmentBytes: 1 << 20, indexIntervalBytes: 4096 });
  try {
    await fn(store, join(dir, "topics"));
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("a topic whose files failed to open is opened once, however many ask at the same time", async () => {
  await withStore(async (store, dir) => {
    // A file where the topic's directory goes: its partitions cannot be made.
    await Deno.writeTextFile(join(dir, "t"), "");
    await assert.rejects(
      () => store.apply({ op: "topic", topic: "t", partitions: 3, createdAt: 0, id: "id-1" }),
      /cannot open the files of topic 't' in /,
    );
    assert.equal(store.isUnopened("t"), true);
    assert.equal(store.has("t"), false);
    await Deno.remove(join(dir, "t"));
    const opened: string[] = [];
    store.onEveryLog((log) => {
      if (log.dir.startsWith(join(dir, "t"))) opened.push(log.dir);
    });
    // Producers of three partitions retry at once: one open, three partitions, each its own directory.
    await Promise.all([store.openUnopened("t"), store.openUnopened("t"), store.openUnopened()]);
    assert.deepEqual(opened.sort(), [0, 1, 2].map((p) => join(dir, "t", String(p))), "each partition opened once");
    assert.equal(store.isUnopened("t"), false);
    assert.equal(store.partitionCount("t"), 3);
    const keys = store.all().map((r) => r.key).filter((k) => k.startsWith("t/"));
    assert.deepEqual(keys, ["t/0", "t/1", "t/2"]);
    for (const p of [0, 1, 2]) assert.equal(store.partition("t", p).dir, join(dir, "t", String(p)));
    assert.equal(JSON.parse(await Deno.readTextFile(join(dir, "t", "topic.json"))).id, "id-1");
  });
});

Deno.test("a topic opened in part is opened the rest of the way once, however many ask", async () => {
  await withStore(async (store, dir) => {
    // A file where partition 1's directory goes: partition 0 opens, 1 and 2 do not.
    await Deno.mkdir(join(dir, "t"), { recursive: true });
    await Deno.writeTextFile(join(dir, "t", "1"), "");
    await assert.rejects(() => store.apply({ op: "topic", topic: "t", partitions: 3, createdAt: 0, id: "id-1" }));
    assert.equal(store.partitionCount("t"), 1);
    await Deno.remove(join(dir, "t", "1"));
    await Promise.all([store.openUnopened("t"), store.openUnopened("t")]);
    assert.equal(store.partitionCount("t"), 3);
    for (const p of [0, 1, 2]) assert.equal(store.partition("t", p).dir, join(dir, "t", String(p)));
  });
});

Deno.test("a topic.json that failed to be written is written when the topic is opened again", async () => {
  await withStore(async (store, dir) => {
    // A directory where topic.json goes: the partitions open, the file cannot be put in its place.
    await Deno.mkdir(join(dir, "t", "topic.json"), { recursive: true });
    await assert.rejects(() => store.apply({ op: "topic", topic: "t", partitions: 2, createdAt: 0, id: "id-1" }));
    assert.equal(store.isUnopened("t"), true);
    assert.equal(store.partitionCount("t"), 2);
    await Deno.remove(join(dir, "t", "topic.json"));
    await store.openUnopened("t");
    // Without it, the next start would take the directory for the same incarnation whatever the metadata says.
    assert.equal(JSON.parse(await Deno.readTextFile(join(dir, "t", "topic.json"))).id, "id-1");
    assert.equal(store.partitionCount("t"), 2);
  });
});

Deno.test("a record with another id for an open topic replaces its logs, as the next start would", async () => {
  await withStore(async (store, dir) => {
    await store.apply({ op: "topic", topic: "t", partitions: 1, createdAt: 0, id: "id-1" });
    store.partition("t", 0).append(1, 1, (base) => new TextEncoder().encode(`{"offset":${base},"value":"old"}\n`));
    await store.partition("t", 0).append(1, 1, (base) => new TextEncoder().encode(`{"offset":${base},"value":"x"}\n`))
      .done;
    assert.equal(store.partition("t", 0).logEndOffset, 2);
    await store.apply({ op: "topic", topic: "t", partitions: 1, createdAt: 0, id: "id-2" });
    assert.equal(store.partition("t", 0).logEndOffset, 0);
    assert.equal(JSON.parse(await Deno.readTextFile(join(dir, "t", "topic.json"))).id, "id-2");
  });
});
