/**
 * With --auth-token, the console (page, events, API) and the brokers' /metrics
 * need the token; a browser trades `?token=` for a cookie once; and the token
 * appears in no page, event or API answer.
 */
import assert from "node:assert/strict";
import { TestCluster, withDeadline } from "./harness.ts";
import { http, printedUrl } from "./http_helpers.ts";

const TOKEN = "console-s3cret-91c2";

/** The first `data:` event of an event stream, then the stream is closed. */
async function firstEvent(url: string, headers: Record<string, string>): Promise<{ status: number; data: string }> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 10_000);
  try {
    const res = await fetch(url, { headers, signal: controller.signal });
    if (!res.ok || !res.body) return { status: res.status, data: await res.text() };
    assert.match(res.headers.get("content-type") ?? "", /^text\/event-stream/);
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while (!/^data: .*\n\n/m.test(text)) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
    await reader.cancel();
    return { status: res.status, data: text.match(/^data: (.*)$/m)?.[1] ?? "" };
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("--auth-token guards the console and /metrics; the token never appears in what they serve", async (t) => {
  await withDeadline(60_000, "console auth test", async () => {
    const cluster = await TestCluster.start({
      env: { YAK_AUTH_TOKEN: TOKEN },
      zookeeperArgs: ["--http-port", "0"],
      brokerArgs: ["--http-port", "0"],
    });
    try {
      const consoleUrl = await printedUrl(cluster, "zookeeper");
      const leader = (await cluster.lease()).leaderId!;
      const metricsUrl = await printedUrl(cluster, leader);
      const bearer = { authorization: `Bearer ${TOKEN}` };

      await t.step("the API: 401 without the token or with a wrong one, 200 with the bearer header", async () => {
        const none = await http(`${consoleUrl}api/status`);
        assert.equal(none.status, 401);
        assert.match(none.headers.get("www-authenticate") ?? "", /^Bearer/);
        assert.equal(
          (await http(`${consoleUrl}api/status`, { headers: { authorization: "Bearer nope" } })).status,
          401,
        );
        const ok = await http(`${consoleUrl}api/status`, { headers: bearer });
        assert.equal(ok.status, 200, ok.body);
        assert.equal(JSON.parse(ok.body).lease.leaderId, leader);
        assert.ok(!ok.body.includes(TOKEN), "the token is not in the status");
        for (const path of ["", "app.js", "api/events"]) {
          assert.equal((await http(`${consoleUrl}${path}`)).status, 401, `/${path} without the token`);
        }
      });

      await t.step("?token= sets a cookie (not the token) and redirects to the address without it", async () => {
        const wrong = await http(`${consoleUrl}?token=nope`);
        assert.equal(wrong.status, 401);
        assert.equal(wrong.headers.get("set-cookie"), null);
        const res = await http(`${consoleUrl}?token=${TOKEN}&view=x`);
        assert.equal(res.status, 303);
        assert.equal(res.headers.get("location"), "/?view=x");
        const setCookie = res.headers.get("set-cookie") ?? "";
        assert.match(setCookie, /^yak_console=[0-9a-f]{64}; Path=\/; HttpOnly; SameSite=Strict/);
        assert.ok(!setCookie.includes(TOKEN));
        const cookie = { cookie: setCookie.split(";")[0] };
        const page = await http(consoleUrl, { headers: cookie });
        assert.equal(page.status, 200);
        assert.match(page.body, /<title>yak console<\/title>/);
        assert.ok(!page.body.includes(TOKEN), "the page does not carry the token");
        const script = await http(`${consoleUrl}app.js`, { headers: cookie });
        assert.equal(script.status, 200);
        assert.ok(!script.body.includes(TOKEN));
        const event = await firstEvent(`${consoleUrl}api/events`, cookie);
        assert.equal(event.status, 200);
        assert.equal(JSON.parse(event.data).status.lease.leaderId, leader);
        assert.ok(!event.data.includes(TOKEN), "nor do its events");
        assert.equal((await http(consoleUrl, { headers: { cookie: "yak_console=00" } })).status, 401);
      });

      await t.step("/metrics needs the bearer token (a cookie is not enough)", async () => {
        assert.equal((await http(metricsUrl)).status, 401);
        assert.equal((await http(`${metricsUrl}?token=${TOKEN}`)).status, 401);
        const ok = await http(metricsUrl, { headers: bearer });
        assert.equal(ok.status, 200);
        assert.match(ok.body, /^# HELP yak_/m);
        assert.ok(!ok.body.includes(TOKEN));
      });
    } finally {
      await cluster.stop();
    }
  });
});
