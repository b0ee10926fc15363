// End-to-end: the JavaScript client (/tickwire.js, as the broker serves it) in Debian's headless
// Chromium against real brokers. Each test opens a page at the broker's origin, imports the
// library there and drives it with page.evaluate; the page records what the library hands it
// (messages, states, errors, lag and recovered events), and Playwright records the WebSocket
// frames on the wire, so a test can check both what the application sees and what was sent.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHmac, randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startBroker, stopBroker, launchBrowser, waitFor, publish, startProxy, sleep } from "./harness.mjs";

let broker, browser;

before(async () => {
  broker = await startBroker();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await stopBroker(broker?.child);
});

/**
 * A page at `origin` (the broker whose /tickwire.js is imported) with a client connected to
 * `wsUrl`. Returns helpers: sub(pattern, options) resolves when the subscription is ready;
 * h() reads what the page recorded; frames lists the wire frames ({dir, ...parsed}).
 */
async function clientPage(origin, wsUrl, options = {}, { getToken } = {}) {
  const page = await browser.context.newPage();
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(e));
  const frames = [];
  page.on("websocket", (ws) => {
    ws.on("framesent", (f) => frames.push({ dir: "out", ...JSON.parse(f.payload) }));
    ws.on("framereceived", (f) => frames.push({ dir: "in", ...JSON.parse(f.payload) }));
  });
  if (getToken) await page.exposeFunction("nodeGetToken", getToken);
  // A document of the broker's origin with no script of its own: the library's URL, shown as
  // text. `import("/tickwire.js")` then loads the file as the broker serves it. (A page made up
  // by the test with page.route would not do: Chromium counts it outside the local network and
  // blocks its WebSockets to 127.0.0.1.)
  await page.goto(`http://${origin}/tickwire.js`);
  await page.evaluate(async ({ url, options, withToken }) => {
    const { connect } = await import("/tickwire.js");
    const h = (window.h = { msgs: [], states: [], errors: [], lags: [], recovered: [] });
    if (withToken) options.getToken = () => window.nodeGetToken();
    const tw = (window.tw = connect(url, options));
    tw.on("state", (s) => h.states.push(s));
    tw.on("error", (e) => h.errors.push({ code: e.code, message: e.message, topics: e.topics, closeCode: e.closeCode }));
    tw.on("lag", (l) => h.lags.push(l));
    tw.on("recovered", (r) => h.recovered.push(r));
    window.subs = {};
    window.sub = (pattern, opts) => {
      const s = tw.subscribe(pattern, (m) => h.msgs.push({ ...m, at: performance.now() }), opts);
      window.subs[pattern] = s;
      return s.ready.then(() => "ready", (e) => e.code);
    };
  }, { url: wsUrl, options, withToken: Boolean(getToken) });
  return {
    page,
    frames,
    pageErrors,
    sub: (pattern, opts = {}) => page.evaluate(([p, o]) => window.sub(p, o), [pattern, opts]),
    h: () => page.evaluate(() => window.h),
    msgs: async (topic) => (await page.evaluate(() => window.h.msgs)).filter((m) => m.topic === topic),
    async close() {
      await page.evaluate(() => window.tw.close()).catch(() => {});
      await page.close();
    },
  };
}

const wsOf = (addr) => `ws://${addr}/ws`;

test("subscribe and receive: the snapshot, then each publication in order", { timeout: 30_000 }, async () => {
  const { publicAddr, localAddr } = broker;
  await publish(localAddr, "e2e/basic", { px: 1 });
  const c = await clientPage(publicAddr, wsOf(publicAddr));
  try {
    assert.equal(await c.sub("e2e/basic"), "ready");
    const [snap] = await waitFor("the snapshot", () => c.msgs("e2e/basic").then((m) => m.length && m));
    assert.deepEqual([snap.seq, snap.snapshot, snap.data], [1, true, { px: 1 }]);
    for (let px = 2; px <= 5; px++) await publish(localAddr, "e2e/basic", { px });
    const got = await waitFor("four updates", () => c.msgs("e2e/basic").then((m) => m.length === 5 && m));
    assert.deepEqual(got.map((m) => [m.seq, m.snapshot, m.data.px]), [[1, true, 1], [2, false, 2], [3, false, 3], [4, false, 4], [5, false, 5]]);
    const h = await c.h();
    assert.deepEqual(h.states, ["connecting", "open"]);
    assert.deepEqual(h.errors, []);
    assert.deepEqual(c.pageErrors, []);
  } finally {
    await c.close();
  }
});

test("deltas: the server sends merge patches, the client rebuilds exactly what was published", { timeout: 30_000 }, async () => {
  const { publicAddr, localAddr } = broker;
  const c = await clientPage(publicAddr, wsOf(publicAddr));
  try {
    assert.equal(await c.sub("e2e/delta", { delta: true }), "ready");
    // A 20-field record where each update changes a few fields, nested ones included, and
    // sometimes drops or adds a field (a null in the patch).
    let record = {
      symbol: "E2E", exchange: "XTST", currency: "USD", status: "trading", lot_size: 100,
      prev_close: 100, open: 100.5, high: 101, low: 99.5, bid: 100.1, ask: 100.2, bid_size: 300,
      ask_size: 500, last: 100.15, last_size: 100, change: 0.15, volume: 123456, vwap: 100.07,
      trades: 812, book: { depth: [1, 2, 3], venue: { mic: "XTST", open: true } },
    };
    const published = [];
    for (let i = 0; i < 30; i++) {
      published.push(record);
      await publish(localAddr, "e2e/delta", record);
      record = { ...record, bid: record.bid + 0.01, ask: record.ask + 0.01, trades: record.trades + 1 };
      if (i % 5 === 1) record.book = { ...record.book, venue: { ...record.book.venue, open: !record.book.venue.open } };
      if (i % 7 === 3) { const { halted, ...rest } = record; record = halted ? rest : { ...rest, halted: true }; }
      if (i % 9 === 4) record = { ...record, book: { ...record.book, depth: [i] } };
    }
    const got = await waitFor("30 messages", () => c.msgs("e2e/delta").then((m) => m.length === 30 && m));
    assert.deepEqual(got.map((m) => m.seq), published.map((_, i) => i + 1));
    got.forEach((m, i) => assert.deepEqual(m.data, published[i], `seq ${m.seq}`));
    const wire = c.frames.filter((f) => f.dir === "in" && f.type === "msg" && f.topic === "e2e/delta");
    const deltas = wire.filter((f) => "delta" in f);
    assert.ok(deltas.length >= 20, `most updates went as patches: ${deltas.length} of ${wire.length}`);
    assert.ok(deltas.some((f) => f.delta.halted === null), "a field removed by a null");
    assert.deepEqual((await c.h()).errors, []);
  } finally {
    await c.close();
  }
});

test("the broker killed and restarted: the client is open again and gets new publications", { timeout: 60_000 }, async () => {
  let own = await startBroker();
  const c = await clientPage(own.publicAddr, wsOf(own.publicAddr), { minDelay: 100, maxDelay: 1000 });
  try {
    assert.equal(await c.sub("e2e/restart", { delta: true }), "ready");
    await publish(own.localAddr, "e2e/restart", { v: "before" });
    await waitFor("the first publication", () => c.msgs("e2e/restart").then((m) => m.length === 1));

    await stopBroker(own.child, "SIGKILL");
    await waitFor("reconnecting", () => c.h().then((h) => h.states.at(-1) === "reconnecting"));
    own = await startBroker({ listen: own.publicAddr, localListen: own.localAddr });
    await waitFor("open again", () => c.h().then((h) => h.states.filter((s) => s === "open").length === 2), 20_000);
    // The new broker has a new epoch: its seqs start over and nothing can be replayed.
    const [recovered] = await waitFor("the recovered event", () => c.h().then((h) => h.recovered.length && h.recovered));
    assert.deepEqual(recovered, { recovered: [], snapshotted: ["e2e/restart"], epochChanged: true });

    await publish(own.localAddr, "e2e/restart", { v: "after" });
    const got = await waitFor("the publication after the restart", () => c.msgs("e2e/restart").then((m) => m.length === 2 && m));
    assert.deepEqual(got.map((m) => [m.seq, m.data.v]), [[1, "before"], [1, "after"]]);
    assert.deepEqual((await c.h()).errors.filter((e) => e.code !== "disconnected"), []);
  } finally {
    await c.close();
    await stopBroker(own.child);
  }
});

test("a short outage (connection cut, broker up) is recovered without a gap: every seq once, in order", { timeout: 60_000 }, async () => {
  const { publicAddr, localAddr } = broker;
  const proxy = await startProxy(publicAddr);
  const c = await clientPage(publicAddr, wsOf(proxy.addr), { minDelay: 50, maxDelay: 500 });
  const topic = "e2e/outage";
  const published = new Map(); // seq -> data
  const pub = async (n) => published.set(await publish(localAddr, topic, { n, pad: "x".repeat(200) }), { n, pad: "x".repeat(200) });
  try {
    assert.equal(await c.sub(topic, { delta: true }), "ready");
    let n = 0;
    while (n < 20) await pub(++n);
    await waitFor("the first 20", () => c.msgs(topic).then((m) => m.length === 20));

    // Cut the connection and keep the client out while 15 more are published: it misses them.
    proxy.hold();
    proxy.cut();
    await waitFor("reconnecting", () => c.h().then((h) => h.states.at(-1) === "reconnecting"));
    while (n < 35) await pub(++n);
    proxy.release();
    // Publishing goes on while the client comes back, racing its replay.
    while (n < 50) { await pub(++n); await sleep(10); }

    const got = await waitFor("all 50", () => c.msgs(topic).then((m) => m.length >= 50 && m), 20_000);
    assert.deepEqual(got.map((m) => m.seq), [...published.keys()], "every seq once, in order");
    got.forEach((m) => assert.deepEqual(m.data, published.get(m.seq)));
    const h = await c.h();
    assert.deepEqual(h.lags, [], "no gap");
    assert.deepEqual(h.recovered, [{ recovered: [topic], snapshotted: [], epochChanged: false }]);
    // On the wire: the second connection's subscribe asked for what came after seq 20, in the
    // epoch of the first ack, and the server listed the topic as recovered.
    const acks = c.frames.filter((f) => f.dir === "in" && f.type === "subscribed");
    const again = c.frames.filter((f) => f.dir === "out" && f.op === "subscribe")[1];
    assert.deepEqual(again.since, { [topic]: 20 });
    assert.equal(again.epoch, acks[0].epoch);
    assert.deepEqual(acks[1].recovered, [topic]);
  } finally {
    await c.close();
    await proxy.close();
  }
});

test("maxRate: at most R messages a second per topic, the latest value arriving", { timeout: 30_000 }, async () => {
  const { publicAddr, localAddr } = broker;
  const topic = "e2e/rate";
  const rate = 2;
  await publish(localAddr, topic, { n: 0 });
  const c = await clientPage(publicAddr, wsOf(publicAddr));
  try {
    assert.equal(await c.sub(topic, { maxRate: rate, delta: true }), "ready");
    await waitFor("the snapshot", () => c.msgs(topic).then((m) => m.length === 1));
    // About 50 a second for 3 seconds.
    const started = Date.now();
    let n = 0;
    while (Date.now() - started < 3000) { await publish(localAddr, topic, { n: ++n }); await sleep(20); }
    const seconds = (Date.now() - started) / 1000;
    const got = await waitFor("the last value", () => c.msgs(topic).then((m) => m.at(-1).data.n === n && m));
    const live = got.slice(1);
    // The limit, with slack for the slot the burst starts in, the last value and a late timer.
    assert.ok(n >= 50, `published ${n}`);
    assert.ok(live.length <= rate * seconds + 3, `${live.length} messages in ${seconds.toFixed(1)} s at max_rate ${rate}`);
    // Counted per second in the page: never near the 50 a second published.
    const perSecond = new Map();
    for (const m of live) {
      const s = Math.floor((m.at - live[0].at) / 1000);
      perSecond.set(s, (perSecond.get(s) ?? 0) + 1);
    }
    assert.ok(Math.max(...perSecond.values()) <= 2 * rate, `per second: ${[...perSecond.values()]}`);
    const h = await c.h();
    assert.ok(h.lags.length > 0, "merged updates show as seq gaps");
    assert.deepEqual(h.errors, []);
  } finally {
    await c.close();
  }
});

test("unsubscribe: nothing more arrives for the topic (proved by a sentinel on another one)", { timeout: 30_000 }, async () => {
  const { publicAddr, localAddr } = broker;
  const c = await clientPage(publicAddr, wsOf(publicAddr));
  try {
    assert.equal(await c.sub("e2e/unsub/gone"), "ready");
    assert.equal(await c.sub("e2e/unsub/sentinel"), "ready");
    await publish(localAddr, "e2e/unsub/gone", { v: 1 });
    await waitFor("a message before unsubscribing", () => c.msgs("e2e/unsub/gone").then((m) => m.length === 1));

    await c.page.evaluate(() => window.subs["e2e/unsub/gone"].unsubscribe());
    const request = await waitFor("the unsubscribe request", () => c.frames.find((f) => f.dir === "out" && f.op === "unsubscribe"));
    assert.deepEqual(request.topics, ["e2e/unsub/gone"]);
    await waitFor("the server's ack", () => c.frames.find((f) => f.dir === "in" && f.type === "unsubscribed" && f.id === request.id));
    // Publications reach a connection in the order they were published: once the sentinel is
    // here, anything for the unsubscribed topic would have come before it.
    await publish(localAddr, "e2e/unsub/gone", { v: 2 });
    await publish(localAddr, "e2e/unsub/sentinel", { v: "sentinel" });
    await waitFor("the sentinel", () => c.msgs("e2e/unsub/sentinel").then((m) => m.length === 1));
    assert.equal((await c.msgs("e2e/unsub/gone")).length, 1, "the callback got nothing more");
    const wire = c.frames.filter((f) => f.dir === "in" && f.type === "msg" && f.topic === "e2e/unsub/gone");
    assert.deepEqual(wire.map((f) => f.seq), [1], "and the server sent nothing more");
    assert.equal(await c.page.evaluate(() => window.subs["e2e/unsub/gone"].active), false);
  } finally {
    await c.close();
  }
});

/** An HS256 JWT, minted as a token service would. */
function mintJwt(secret, claims) {
  const part = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const body = `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}`;
  return `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`;
}

test("token refresh: a short-lived token is refreshed over `auth` before it expires; a narrower grant ends a subscription", { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), "tickwire-jwt-"));
  const secret = randomBytes(32).toString("hex");
  writeFileSync(join(dir, "key"), secret);
  // No clock-skew leeway: past `exp` means expired.
  const own = await startBroker({ args: ["--jwt-key", join(dir, "key"), "--jwt-leeway", "0"] });
  const lifetime = 6; // seconds: the client refreshes at half of it
  let grants = ["e2e/jwt/#"];
  const minted = []; // {token, exp}
  const getToken = () => {
    const exp = Math.floor(Date.now() / 1000) + lifetime;
    const token = mintJwt(secret, { sub: "e2e", exp, topics: grants });
    minted.push({ token, exp });
    return token;
  };
  const c = await clientPage(own.publicAddr, wsOf(own.publicAddr), { refreshBefore: 3000, minDelay: 100, maxDelay: 1000 }, { getToken });
  try {
    assert.equal(await c.sub("e2e/jwt/a"), "ready");
    assert.equal(await c.sub("e2e/jwt/b"), "ready");
    await publish(own.localAddr, "e2e/jwt/a", { v: 1 });
    await waitFor("a message with the first token", () => c.msgs("e2e/jwt/a").then((m) => m.length === 1));

    // The refresh: a new token from getToken, sent with `auth` on the same connection.
    const auth = await waitFor("an auth request", () => c.frames.find((f) => f.dir === "out" && f.op === "auth"), 15_000);
    assert.equal(auth.token, minted[1].token);
    const reply = await waitFor("authenticated", () => c.frames.find((f) => f.dir === "in" && f.id === auth.id));
    assert.equal(reply.type, "authenticated", JSON.stringify(reply));
    assert.equal(reply.sub, "e2e");
    assert.equal(reply.exp, minted[1].exp);

    // Past the first token's expiry the connection is still the first one, and still served.
    const expired = minted[0].exp * 1000 + 500;
    await waitFor("the first token to expire", () => Date.now() > expired, expired - Date.now() + 2000);
    await publish(own.localAddr, "e2e/jwt/a", { v: 2 });
    await waitFor("a message after the first token's expiry", () => c.msgs("e2e/jwt/a").then((m) => m.length === 2));
    let h = await c.h();
    assert.deepEqual(h.states, ["connecting", "open"], "never reconnected");
    assert.deepEqual(h.errors, []);

    // The next token grants only e2e/jwt/a: the server ends the subscription to e2e/jwt/b.
    grants = ["e2e/jwt/a"];
    const ended = await waitFor("the forbidden error", () => c.h().then((x) => x.errors.find((e) => e.code === "forbidden")), 15_000);
    assert.deepEqual(ended.topics, ["e2e/jwt/b"]);
    assert.ok(c.frames.some((f) => f.dir === "in" && f.type === "unsubscribed" && f.reason === "forbidden"));
    assert.equal(await c.page.evaluate(() => window.subs["e2e/jwt/b"].active), false);
    await publish(own.localAddr, "e2e/jwt/b", { v: "not granted" });
    await publish(own.localAddr, "e2e/jwt/a", { v: "sentinel" });
    await waitFor("the sentinel", () => c.msgs("e2e/jwt/a").then((m) => m.at(-1)?.data.v === "sentinel"));
    assert.equal((await c.msgs("e2e/jwt/b")).length, 0);
    h = await c.h();
    assert.deepEqual(h.states, ["connecting", "open"]);
  } finally {
    await c.close();
    await stopBroker(own.child);
    rmSync(dir, { recursive: true, force: true });
  }
});
