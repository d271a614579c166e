import assert from "node:assert/strict";
import { crc32c } from "./crc32c.ts";
import {
  checkLines,
  encodeBatch,
  encodeMarker,
  intactOffset,
  keyBytes,
  LineFields,
  MAX_STORED_LINE_BYTES,
  nextIntactLine,
  parseLines,
  plainValues,
  producerOf,
  readLine,
  type RecordBytes,
  type RecordInput,
  sealLines,
  shownLines,
  textOrBase64,
  valueBytes,
  valuesOf,
  verifyLine,
  writeBatch,
  writeLines,
} from "./record.ts";
import { Rng } from "../../tests/rng.ts";

const encoder = new TextEncoder();

const TS = 1763764800123;

/** Every stored line of `lines` through readLine (the Kafka fetch's reader), as records with byte keys and values. */
function recordBytesOf(lines: Uint8Array): RecordBytes[] {
  const out: RecordBytes[] = [];
  const f = new LineFields();
  for (let s = 0; s < lines.length;) {
    let e = lines.indexOf(10, s);
    if (e === -1) e = lines.length;
    assert.equal(readLine(lines, s, f), e, `the end of the line at byte ${s}`);
    s = e + 1;
    const { offset, epoch, ts, logAppendTime, headers, producer, seq, batchStart, pepoch, txn, control } = f;
    const key = f.keySrc === null ? null : f.keySrc.subarray(f.keyStart, f.keyEnd);
    const value = f.valueSrc === null ? null : f.valueSrc.subarray(f.valueStart, f.valueEnd);
    out.push({
      offset,
      epoch,
      ts,
      logAppendTime,
      key,
      value,
      headers,
      producer,
      seq,
      batchStart,
      pepoch,
      txn,
      control,
    });
  }
  return out;
}

/** The lines of a batch, without their newlines; asserts the batch ends in one. */
function linesOf(batch: string): string[] {
  assert.ok(batch.endsWith("\n"), "a batch ends in a newline");
  return batch.slice(0, -1).split("\n");
}

Deno.test("encodeBatch writes the documented line, field for field", () => {
  assert.equal(
    encodeBatch([{ key: "user-7", value: "hello" }], 42, 3, TS, "p1f3a", 17),
    '{"offset":42,"epoch":3,"ts":1763764800123,"key":"user-7","value":"hello",' +
      '"producer":"p1f3a","seq":17,"batch":1}\n',
  );
});

Deno.test("encodeBatch numbers offsets and sequences within a batch", () => {
  const batch = encodeBatch(
    [{ key: null, value: "a" }, { key: "k", value: "b" }, { key: null }],
    100,
    2,
    5,
    "p-9",
    7,
  );
  assert.equal(
    batch,
    '{"offset":100,"epoch":2,"ts":5,"key":null,"value":"a","producer":"p-9","seq":7,"batch":3}\n' +
      '{"offset":101,"epoch":2,"ts":5,"key":"k","value":"b","producer":"p-9","seq":8}\n' +
      '{"offset":102,"epoch":2,"ts":5,"key":null,"value":"","producer":"p-9","seq":9}\n',
  );
  const lines = linesOf(batch);
  assert.equal(lines.length, 3);
  for (const [i, line] of lines.entries()) {
    assert.deepEqual(Object.keys(JSON.parse(line)), [
      "offset",
      "epoch",
      "ts",
      "key",
      "value",
      "producer",
      "seq",
      ...(i === 0 ? ["batch"] : []),
    ]);
  }
  assert.equal(encodeBatch([], 0, 1, TS, "p-1", 0), "");
});

Deno.test("encodeBatch without a producer leaves out producer and seq", () => {
  const batch = encodeBatch([{ key: null, value: "hi" }], 0, 1, TS, null, 0);
  assert.equal(
    batch,
    '{"offset":0,"epoch":1,"ts":1763764800123,"key":null,"value":"hi"}\n',
  );
  assert.deepEqual(Object.keys(JSON.parse(batch)), [
    "offset",
    "epoch",
    "ts",
    "key",
    "value",
  ]);
});

Deno.test("encodeBatch escapes values and keys so a record stays one line", () => {
  const value = 'say "hi"\nsecond line\r\n\ttab \\ back\u0000nul é 😀 \u2028';
  const key = 'k"\n}{';
  const batch = encodeBatch(
    [{ key, value }, { key: null, value: "\n" }],
    9,
    1,
    TS,
    "p-1",
    0,
  );
  const lines = linesOf(batch);
  assert.equal(lines.length, 2, "no raw newline besides the line ends");
  assert.equal((batch.match(/\n/g) ?? []).length, 2);
  const first = JSON.parse(lines[0]);
  assert.equal(first.value, value);
  assert.equal(first.key, key);
  assert.equal(first.offset, 9);
  assert.equal(first.seq, 0);
  const second = JSON.parse(lines[1]);
  assert.equal(second.value, "\n");
  assert.equal(second.offset, 10);
  assert.equal(second.seq, 1);
  assert.ok(lines[0].includes('"value":"say \\"hi\\"\\nsecond line\\r\\n\\t'));
});

Deno.test("encodeBatch stores byte records as valueB64", () => {
  const b64 = btoa(String.fromCharCode(0xff, 0xfe, 0x00, 0x80));
  const batch = encodeBatch(
    [{ key: "bin", valueB64: b64 }, {
      key: null,
      value: "v",
      valueB64: "AA==",
    }],
    0,
    4,
    TS,
    "p-2",
    3,
  );
  const lines = linesOf(batch);
  assert.equal(
    lines[0],
    `{"offset":0,"epoch":4,"ts":${TS},"key":"bin","valueB64":"${b64}","producer":"p-2","seq":3,"batch":2}`,
  );
  const parsed = JSON.parse(lines[0]);
  assert.deepEqual(Object.keys(parsed), [
    "offset",
    "epoch",
    "ts",
    "key",
    "valueB64",
    "producer",
    "seq",
    "batch",
  ]);
  assert.equal(parsed.value, undefined);
  assert.equal(
    atob(parsed.valueB64),
    String.fromCharCode(0xff, 0xfe, 0x00, 0x80),
  );
  // valueB64 wins over value when both are given.
  const both = JSON.parse(lines[1]);
  assert.equal(both.valueB64, "AA==");
  assert.equal("value" in both, false);
});

Deno.test("producerOf reads producer and seq from a stored line", () => {
  const lines = linesOf(
    encodeBatch(
      [{ key: "a", value: "x" }, { key: "b", value: "y" }],
      5,
      1,
      TS,
      "p-1f3a",
      41,
    ),
  );
  // The batch's first line carries its record count, so a new leader knows the batch's bounds.
  assert.ok(lines[0].endsWith(',"producer":"p-1f3a","seq":41,"batch":2}'), lines[0]);
  assert.deepEqual(producerOf(lines[0]), { producer: "p-1f3a", seq: 41, batch: 2, epoch: 0 });
  assert.deepEqual(producerOf(lines[1]), { producer: "p-1f3a", seq: 42, batch: 0, epoch: 0 });
});

Deno.test("producerOf returns null for lines without a producer", () => {
  const [plain] = linesOf(
    encodeBatch([{ key: null, value: "v" }], 0, 1, TS, null, 0),
  );
  assert.equal(producerOf(plain), null);
  assert.equal(producerOf(""), null);
  assert.equal(producerOf('{"offset":0,"producer":"p-1"}'), null, "no seq");
  assert.equal(producerOf('{"offset":0,"producer":"p-1","seq":"x"}'), null, "seq not a number");
  assert.equal(producerOf('{"offset":0,"producer":"p-1","seq":1.5}'), null, "seq not an integer");
  // A value that spells out a producer field is escaped, so it is not one.
  const [spoof] = linesOf(
    encodeBatch(
      [{ key: null, value: ',"producer":"evil","seq":9}' }],
      0,
      1,
      TS,
      null,
      0,
    ),
  );
  assert.equal(producerOf(spoof), null);
  const [real] = linesOf(
    encodeBatch(
      [{ key: null, value: ',"producer":"evil","seq":9}' }],
      0,
      1,
      TS,
      "p-ok",
      3,
    ),
  );
  assert.deepEqual(producerOf(real), { producer: "p-ok", seq: 3, batch: 1, epoch: 0 });
});

Deno.test("readLine reads every kind of stored line as the full parse does", () => {
  const enc = new TextEncoder();
  const records: RecordInput[] = [
    { key: null, value: "plain" },
    { key: "k", value: 'with "quotes" and \\ and é and \n' },
    { key: 'ké"y', value: "v" },
    { key: null, keyB64: btoa("\u00ff\u0000"), valueB64: btoa("\u0080\u00fe") },
    { key: "k", value: null },
    {
      key: "h",
      value: "v",
      headers: [{ key: "a", value: "b" }, { key: "n", value: null }, { key: "x", valueB64: "/w==" }],
    },
    { key: null, value: "", ts: -1 },
  ];
  const lines = enc.encode(
    encodeBatch(records, 40, 3, 1_700_000_000_000, "p-1", 7) + encodeBatch(records, 47, 4, 5, null, 0) +
      // A producer's batch (its first line says the batch size), with an append time, and a transaction's.
      encodeBatch(records, 54, 4, 6, "p12", 3, true) + encodeBatch(records, 61, 5, 7, "p9", 0, false, 2),
  );
  // As written before checksums, and sealed (where a line's end is found from its checksum field).
  for (const form of [lines, sealLines(lines)]) {
    const got = recordBytesOf(form);
    const want = parseLines(new TextDecoder().decode(form));
    assert.equal(got.length, want.length);
    got.forEach((g, i) => {
      const w = want[i];
      assert.deepEqual([g.offset, g.epoch, g.ts], [w.offset, w.epoch, w.ts]);
      assert.deepEqual(g.key, keyBytes(w));
      assert.deepEqual(g.value, valueBytes(w));
      assert.deepEqual(g.headers, (w.headers ?? []).map((h) => ({ key: h.key, value: valueBytes(h) })));
    });
  }
});

Deno.test("valuesOf reads values, never a header's value; bytes and headers take the full parse", () => {
  const text = (r: RecordInput) => encodeBatch([r], 0, 1, TS, "p-1", 0);
  assert.deepEqual(valuesOf(text({ key: "k", value: 'say "hi"' })), ['say "hi"']);
  const withHeaders = text({ key: "k", value: "hello", headers: [{ key: "trace", value: "abc" }] });
  assert.notDeepEqual(valuesOf(withHeaders), ['abc"}],"value":"hello']);
  assert.equal(valuesOf(withHeaders), null);
  assert.equal(valuesOf(text({ key: null, valueB64: "AP8=" })), null);
  assert.deepEqual(parseLines(withHeaders).map((r) => r.value), ["hello"]);
});

Deno.test("sealLines adds a CRC-32C of each line's bytes as its last field; verifyLine finds any changed byte", () => {
  const plain = encoder.encode(
    encodeBatch([{ key: "k", value: 'a "quoted" ü' }, { key: null, value: null }], 41, 2, 5, "p9", 3),
  );
  const sealed = sealLines(plain, 2);
  const lines = new TextDecoder().decode(sealed).split("\n").slice(0, -1);
  assert.equal(lines.length, 2);
  for (const line of lines) {
    const m = /^(.*),"crc":"([0-9a-f]{8})"\}$/.exec(line)!;
    assert.ok(m, line);
    // The checksum covers every byte before its field: checkable with any CRC-32C tool.
    assert.equal(crc32c(encoder.encode(m[1])).toString(16).padStart(8, "0"), m[2]);
    assert.equal(JSON.parse(line).crc, m[2]);
  }
  assert.deepEqual(sealLines(plain), sealed, "the line count is found when not given");
  const end = sealed.indexOf(10);
  assert.equal(verifyLine(sealed, 0, end, 41), "sealed");
  assert.equal(verifyLine(sealed, end + 1, sealed.length - 1, 42), "sealed");
  assert.equal(verifyLine(sealed, 0, end, 40), "damaged", "an intact line in the wrong place");
  for (let i = 0; i < end; i++) {
    const hurt = sealed.slice();
    hurt[i] ^= 0x04;
    assert.notEqual(verifyLine(hurt, 0, end, 41), "sealed", `a change at byte ${i} is caught`);
  }
  // Lines from before checksums are "unsealed" (the reader checks them by parsing).
  assert.equal(verifyLine(plain, 0, plain.indexOf(10), 41), "unsealed");
  assert.equal(verifyLine(encoder.encode('{"offset":7}'), 0, 12, 7), "unsealed", "a short line from before checksums");
  assert.throws(() => sealLines(encoder.encode('{"offset":0}')), /ending in '\}'/);
});

Deno.test("producerOf and valuesOf read sealed lines and lines from before checksums alike", () => {
  const plain = encodeBatch([{ key: null, value: "x,y" }, { key: null, value: "z" }], 0, 1, 0, "p7", 4);
  const sealed = new TextDecoder().decode(sealLines(encoder.encode(plain)));
  for (const text of [plain, sealed]) {
    const [a, b] = text.split("\n");
    assert.deepEqual(producerOf(a), { producer: "p7", seq: 4, batch: 2, epoch: 0 });
    assert.deepEqual(producerOf(b), { producer: "p7", seq: 5, batch: 0, epoch: 0 });
    assert.deepEqual(valuesOf(text), ["x,y", "z"]);
  }
  const noProducer = new TextDecoder().decode(
    sealLines(encoder.encode(encodeBatch([{ key: null, value: "v" }], 0, 1, 0, null, 0))),
  );
  assert.deepEqual(valuesOf(noProducer), ["v"]);
  assert.equal(recordBytesOf(encoder.encode(sealed))[0].value?.length, 3);
});

Deno.test("LogAppendTime: every record of the batch carries the leader's time, marked, and the fast reader sees it", () => {
  const text = encodeBatch(
    [{ key: null, value: "a", ts: 5 }, { key: "k", value: "b", ts: 6 }],
    0,
    1,
    TS,
    null,
    0,
    true,
  );
  const parsed = parseLines(text);
  assert.deepEqual(parsed.map((r) => [r.ts, r.logAppendTime]), [[TS, true], [TS, true]]);
  const bytes = recordBytesOf(encoder.encode(text));
  assert.deepEqual(bytes.map((r) => [r.ts, r.logAppendTime, r.value?.length]), [[TS, true, 1], [TS, true, 1]]);
  const created = recordBytesOf(encoder.encode(encodeBatch([{ key: null, value: "a", ts: 5 }], 0, 1, TS, null, 0)));
  assert.deepEqual([created[0].ts, created[0].logAppendTime], [5, false]);
});

Deno.test("transactional lines and markers: read alike in place and by the full parse, sealed or not", () => {
  const enc = new TextEncoder();
  const text = encodeBatch([{ key: "k", value: "a" }, { key: null, value: "b" }], 10, 3, TS, "p12", 5, false, 2) +
    encodeMarker(12, 3, TS, "p12", 2, true) + encodeMarker(13, 3, TS, "p12", 2, false) +
    encodeBatch([{ key: null, value: "c" }], 14, 3, TS, "p13", 0);
  for (const bytes of [enc.encode(text), sealLines(enc.encode(text))]) {
    const got = recordBytesOf(bytes).map((
      r,
    ) => [r.offset, r.producer, r.seq, r.batchStart, r.pepoch, r.txn, r.control]);
    assert.deepEqual(got, [
      [10, 12, 5, true, 2, true, -1],
      [11, 12, 6, false, 2, true, -1],
      [12, 12, -1, false, 2, true, 1],
      [13, 12, -1, false, 2, true, 0],
      [14, 13, 0, true, 0, false, -1],
    ]);
    const lines = new TextDecoder().decode(bytes).trimEnd().split("\n");
    assert.deepEqual(producerOf(lines[0]), { producer: "p12", seq: 5, batch: 2, epoch: 2 });
    assert.deepEqual(producerOf(lines[1]), { producer: "p12", seq: 6, batch: 0, epoch: 2 });
    assert.equal(producerOf(lines[2]), null, "a marker has no sequence");
    // jq reads every line: a marker says what it is and whose.
    assert.deepEqual(JSON.parse(lines[2]).marker, "commit");
  }
  assert.equal(valuesOf(text), null, "a marker takes the full parse");
  const shown = shownLines(text, [{ producer: "p12", first: 10, last: 13 }]);
  assert.deepEqual(parseLines(shown).map((r) => r.value), ["c"]);
  assert.deepEqual(parseLines(shownLines(text, [])).map((r) => r.value), ["a", "b", "c"]);
  assert.deepEqual(
    parseLines(shownLines(text, [{ producer: "p13", first: 0, last: 20 }])).length,
    3,
    "not transactional: kept",
  );
});

/**
 * The lines as they were built before writeBatch, from JSON.stringify and
 * template strings: the oracle writeBatch must match byte for byte.
 */
function stringifiedBatch(
  records: readonly RecordInput[],
  baseOffset: number,
  epoch: number,
  ts: number,
  producer: string | null,
  baseSeq: number,
  logAppendTime: boolean,
  txnEpoch: number | null,
): string {
  const head = `,"epoch":${epoch},"ts":${ts},${logAppendTime ? '"logAppendTime":true,' : ""}`;
  const txn = txnEpoch === null ? "}\n" : `,"pepoch":${txnEpoch},"txn":true}\n`;
  let out = "";
  records.forEach((raw, i) => {
    // A producer's bytes are stored as text where they are UTF-8, else base64.
    const r = raw.rawValue === undefined ? raw : { ...raw, rawValue: undefined, ...asField(raw.rawValue) };
    const key = r.keyB64 !== undefined
      ? `"keyB64":${JSON.stringify(r.keyB64)}`
      : r.key === null
      ? `"key":null`
      : `"key":${JSON.stringify(r.key)}`;
    const headers = r.headers !== undefined && r.headers.length > 0 ? `,"headers":${JSON.stringify(r.headers)}` : "";
    const value = r.valueB64 !== undefined
      ? `"valueB64":${JSON.stringify(r.valueB64)}`
      : r.value === null
      ? `"value":null`
      : `"value":${JSON.stringify(r.value ?? "")}`;
    const tail = producer === null
      ? "}\n"
      : i === 0
      ? `,"producer":"${producer}","seq":${baseSeq},"batch":${records.length}${txn}`
      : `,"producer":"${producer}","seq":${baseSeq + i}${txn}`;
    const start = r.ts === undefined || logAppendTime ? head : `,"epoch":${epoch},"ts":${r.ts},`;
    out += `{"offset":${baseOffset + i}${start}${key}${headers},${value}${tail}`;
  });
  return out;
}

function asField(bytes: Uint8Array): { value: string } | { valueB64: string } {
  const v = textOrBase64(bytes);
  return "text" in v ? { value: v.text } : { valueB64: v.b64 };
}

Deno.test("writeBatch writes the bytes of the stringified lines, sealed or not, for every kind of text and of producer bytes", () => {
  // Seeded, so a failure replays.
  const rng = new Rng(0x9e3779b9);
  const rand = (n: number) => rng.int(n);
  // ASCII, the JSON escapes, DEL, 2-, 3- and 4-byte UTF-8, and lone surrogates (JSON.stringify escapes those).
  const pieces = [
    "a",
    "Z",
    "0",
    " ",
    '"',
    "\\",
    "\n",
    "\u0000",
    "\u001f",
    "\u007f",
    "é",
    "€",
    "😀",
    "\ud800",
    "\udfff",
    "/",
  ];
  const text = () => {
    let s = "";
    const n = rand(4) === 0 ? rand(400) : rand(12);
    for (let i = 0; i < n; i++) s += rand(3) === 0 ? pieces[rand(pieces.length)] : "x";
    return s;
  };
  for (let round = 0; round < 300; round++) {
    const records: RecordInput[] = [];
    for (let i = 1 + rand(20); i > 0; i--) {
      const r: RecordInput = { key: rand(3) === 0 ? null : text() };
      if (rand(6) === 0) r.keyB64 = encoder.encode(text()).toBase64();
      const v = rand(8);
      if (v === 0) r.value = null;
      else if (v === 1) r.valueB64 = "AP8=";
      else if (v === 3) r.rawValue = encoder.encode(text());
      else if (v === 4) r.rawValue = new Uint8Array([0x61, 0xff, 0x62].slice(rand(2)));
      else if (v !== 2) r.value = text();
      if (rand(4) === 0) {
        r.headers = [{ key: text(), value: text() }, { key: "n", value: null }, { key: "b", valueB64: "/w==" }];
      }
      if (rand(2) === 0) r.ts = [TS, 0, -1, 2 ** 53 - 1, 1.5][rand(5)];
      records.push(r);
    }
    const base = [0, 7, 123456789, 2 ** 53 - 100][rand(4)];
    const producer = rand(2) === 0 ? null : `p${rand(1000)}`;
    const appendTime = rand(4) === 0;
    const txnEpoch = rand(3) === 0 ? rand(5) : null;
    const want = stringifiedBatch(records, base, 3, TS, producer, 40, appendTime, txnEpoch);
    assert.equal(encodeBatch(records, base, 3, TS, producer, 40, appendTime, txnEpoch), want, `round ${round}`);
    assert.deepEqual(
      writeBatch(records, base, 3, TS, producer, 40, appendTime, txnEpoch),
      sealLines(encoder.encode(want), records.length),
      `round ${round}`,
    );
  }
});

Deno.test("plainValues copies the values of plain lines as the full parse reads them, and refuses any other line", () => {
  // Seeded, so a failure replays.
  const rng = new Rng(0x2545f491);
  const rand = (n: number) => rng.int(n);
  // Text a stored string holds as it is (2-, 3- and 4-byte UTF-8 too, and JSON's own punctuation).
  const pieces = ["a", " ", "é", "€", "😀", "/", "{", "}", ",", ":", "'"];
  const text = () => {
    let s = "";
    for (let n = rand(4) === 0 ? rand(300) : rand(10); n > 0; n--) {
      s += rand(4) === 0 ? pieces[rand(pieces.length)] : "x";
    }
    return s;
  };
  // Each batch has at most one line that is not plain, of one kind.
  const escapes = ['"', "\\", "\n", "\u0001", "\ud800"];
  const kinds: ((r: RecordInput) => void)[] = [
    (r) => r.value = text() + escapes[rand(escapes.length)] + text(),
    (r) => r.key = text() + escapes[rand(escapes.length)],
    (r) => r.headers = [{ key: "h", value: "v" }],
    (r) => r.value = null,
    (r) => r.valueB64 = "AP8=",
    (r) => r.keyB64 = "AP8=",
    (r) => r.ts = [-1, 1.5][rand(2)],
  ];
  const tally = new Array(kinds.length + 2).fill(0);
  for (let round = 0; round < 400; round++) {
    const records: RecordInput[] = [];
    for (let i = 1 + rand(30); i > 0; i--) {
      const r: RecordInput = { key: rand(2) === 0 ? null : text(), value: text() };
      if (rand(3) === 0) r.ts = [TS, 0, 2 ** 53 - 1][rand(3)];
      records.push(r);
    }
    // 0: all plain; 1 to kinds.length: one record of that kind; after: a transaction marker at the end.
    const kind = rand(kinds.length + 2);
    tally[kind]++;
    if (kind >= 1 && kind <= kinds.length) kinds[kind - 1](records[rand(records.length)]);
    const producer = rand(2) === 0 ? null : `p${rand(100)}`;
    const base = [0, 9, 2 ** 53 - 100][rand(3)];
    // LogAppendTime stores the leader's clock in place of an odd timestamp.
    const appendTime = kind !== kinds.length && rand(4) === 0;
    let lines = encodeBatch(records, base, 2, TS, producer, 5, appendTime, rand(4) === 0 ? 1 : null);
    if (kind > kinds.length) lines += encodeMarker(base + records.length, 2, TS, "p1", 0, true);
    const got = plainValues(rand(2) === 0 ? sealLines(encoder.encode(lines)) : encoder.encode(lines));
    assert.equal(got !== null, kind === 0, `round ${round}, kind ${kind}: ${lines}`);
    if (got === null) continue;
    const want = parseLines(lines).map((r) => r.value + "\n");
    assert.equal(new TextDecoder().decode(got.values), want.join(""), `round ${round}`);
    let end = 0;
    assert.deepEqual([...got.ends], want.map((v) => end += encoder.encode(v).length), `round ${round}`);
  }
  assert.ok(tally.every((n) => n >= 20), `every kind tried: ${tally}`);
});

Deno.test("writeLines writes what writeBatch writes for the same values as records, and refuses a wrong count", () => {
  // Seeded, so a failure replays.
  const rng = new Rng(0x85ebca6b);
  const rand = (n: number) => rng.int(n);
  // Plain ASCII, the JSON escapes, a carriage return, DEL, UTF-8 of 2 to 4 bytes, and bytes that are not UTF-8.
  const pieces = [
    [0x61],
    [0x20],
    [0x22],
    [0x5c],
    [0x0d],
    [0x01],
    [0x7f],
    [0xc3, 0xa9],
    [0xe2, 0x82, 0xac],
    [
      0xf0,
      0x9f,
      0x98,
      0x80,
    ],
    [0xff],
    [0xc3],
  ];
  for (let round = 0; round < 300; round++) {
    const values: number[][] = [];
    for (let i = 1 + rand(20); i > 0; i--) {
      const v: number[] = [];
      for (let n = rand(4) === 0 ? rand(300) : rand(12); n > 0; n--) {
        v.push(...(rand(3) === 0 ? pieces[rand(12)] : [0x78]));
      }
      values.push(v);
    }
    const lines = new Uint8Array(values.flatMap((v) => [...v, 0x0a]));
    const records: RecordInput[] = [];
    let at = 0;
    for (const v of values) {
      records.push({ key: null, rawValue: lines.subarray(at, at + v.length) });
      at += v.length + 1;
    }
    const base = [0, 7, 2 ** 53 - 100][rand(3)];
    const producer = rand(2) === 0 ? null : `p${rand(1000)}`;
    const appendTime = rand(4) === 0;
    const txnEpoch = rand(3) === 0 ? rand(5) : null;
    assert.deepEqual(
      writeLines(lines, values.length, base, 3, TS, producer, 40, appendTime, txnEpoch),
      writeBatch(records, base, 3, TS, producer, 40, appendTime, txnEpoch),
      `round ${round}`,
    );
    checkLines(lines, values.length);
    for (const wrong of [values.length - 1, values.length + 1]) {
      if (wrong < 1) continue;
      assert.throws(() => writeLines(lines, wrong, base, 3, TS, producer, 40), { code: "INVALID_REQUEST" });
      assert.throws(() => checkLines(lines, wrong), { code: "INVALID_REQUEST" });
    }
  }
});

Deno.test("writeLines and writeBatch end every line in its newline, however full the buffer was before its checksum", () => {
  // Values that escape to more than their bytes fill the writer's buffer to every possible point before a line's
  // checksum; one left it exactly full but for the newline, which then was dropped (the next line glued on).
  const encoder = new TextEncoder();
  for (let escaped = 0; escaped < 400; escaped++) {
    for (let plain = 0; plain < 8; plain++) {
      const value = encoder.encode("\u0001".repeat(escaped) + "a".repeat(plain));
      for (const count of [1, 2]) {
        const lines = new Uint8Array(count * (value.length + 1));
        for (let i = 0; i < count; i++) {
          lines.set(value, i * (value.length + 1));
          lines[(i + 1) * (value.length + 1) - 1] = 0x0a;
        }
        const records = Array.from({ length: count }, () => ({ key: null, rawValue: value }));
        for (
          const out of [writeLines(lines, count, 0, 1, TS, null, 0), writeBatch(records, 0, 1, TS, null, 0)]
        ) {
          const newlines = out.reduce((n, b) => n + (b === 0x0a ? 1 : 0), 0);
          const where = `${escaped} escaped and ${plain} plain bytes, ${count} lines`;
          assert.equal(newlines, count, where);
          assert.equal(out[out.length - 1], 0x0a, where);
          assert.equal(parseLines(new TextDecoder().decode(out)).length, count, where);
        }
      }
    }
  }
});

Deno.test("a record whose stored line would pass what a replica takes is refused before it is written", () => {
  const controls = (n: number) => new Uint8Array(n + 1).fill(1).fill(0x0a, n);
  // 5 MB of control characters are 30 MB stored (each one is \u0001): taken; 6 MB would be 36 MB.
  const five = writeLines(controls(5_000_000), 1, 0, 1, TS, null, 0);
  assert.ok(five.length > 30_000_000 && five.length <= MAX_STORED_LINE_BYTES);
  assert.throws(() => writeLines(controls(6_000_000), 1, 0, 1, TS, null, 0), {
    code: "MESSAGE_TOO_LARGE",
    message: /record 0 of the batch takes \d+ bytes once stored/,
  });
  const value = "\u0001".repeat(6_000_000);
  assert.throws(() => writeBatch([{ key: null, value: "a" }, { key: null, value }], 0, 1, TS, null, 0), {
    code: "MESSAGE_TOO_LARGE",
    message: /record 1 of the batch takes/,
  });
});

Deno.test("writeBatch: records sharing a timestamp, between others and records without one, each carry their own", () => {
  // The writer copies a repeated timestamp's field from the line before; values with escapes make it grow mid-batch.
  const tss = [7, 7, 1763764800123, 1763764800123, undefined, 1763764800123, 7, -5, -5, 7];
  const records = tss.map((ts, i) => ({ key: null, value: i % 3 === 0 ? "\u0001".repeat(40) : `v${i}`, ts }));
  for (const logAppendTime of [false, true]) {
    const lines = new TextDecoder().decode(writeBatch(records, 100, 3, 99, "p", 0, logAppendTime)).split("\n");
    assert.equal(lines.pop(), "");
    assert.equal(lines.length, tss.length);
    lines.forEach((line, i) => {
      const r = JSON.parse(line);
      assert.equal(r.offset, 100 + i);
      assert.equal(r.epoch, 3);
      assert.equal(r.ts, logAppendTime ? 99 : tss[i] ?? 99, `line ${i}: ${line}`);
      assert.equal(r.value, records[i].value);
    });
  }
});

Deno.test("nextIntactLine checks each line as it finds its end: a change at any byte is caught, lines in turn", () => {
  const lines = sealLines(encoder.encode(encodeBatch(
    [{ key: "k", value: "a value long enough to take several sixteen-byte steps" }, { key: null, value: "" }, {
      key: null,
      value: "x".repeat(300),
    }],
    41,
    2,
    1763764800123,
    "p3",
    9,
  )));
  const out = { offset: 0, crc: 0 };
  const ends: number[] = [];
  for (let s = 0, want = 41; s < lines.length; want++) {
    const e = nextIntactLine(lines, s, want, false, out);
    assert.equal(e, lines.indexOf(10, s));
    assert.equal(out.offset, want);
    ends.push(e);
    s = e + 1;
  }
  assert.equal(ends.length, 3);
  for (let i = 0; i < lines.length; i++) {
    if (lines[i] === 10) continue;
    const hurt = lines.slice();
    hurt[i] ^= 0x04;
    const line = ends.findIndex((e) => i < e);
    const s = line === 0 ? 0 : ends[line - 1] + 1;
    const e = nextIntactLine(hurt, s, 41 + line, false, out);
    // The same verdict as the check with a separate search and checksum; a change before the checksum field is caught
    // (one inside it may leave a line that parses without one: "unsealed", see verifyLine).
    assert.equal(out.offset, intactOffset(hurt, s, hurt.indexOf(10, s), 41 + line, false), `byte ${i}`);
    if (i < ends[line] - 18) assert.equal(out.offset, -1, `a change at byte ${i} (line ${line}) is caught`);
    assert.equal(e, ends[line]);
  }
  // Not a whole line: no newline follows, and the offset left by the line before is not kept.
  assert.equal(nextIntactLine(lines.subarray(0, ends[0]), 0, 41, false, out), -1);
  assert.equal(out.offset, -1);
});
