// End-to-end: `tickwire --demo` on free ports, the quote board in Debian's headless Chromium.
// Checks that rows fill and prices move, that adding a symbol subscribes to it, that a row's rate
// control resubscribes with max_rate, and that the page reconnects after a broker restart and
// says what it recovered.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, copyFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT, startBroker, stopBroker, launchBrowser, waitFor, publish } from "./harness.mjs";

let broker, browser, page, publicAddr, localAddr;
const sent = []; // frames the page sent over its WebSockets, parsed
const received = []; // and received

// The board's rows: topic -> last price text.
const lastPrices = () =>
  page.$$eval("#board tr", (trs) => Object.fromEntries(trs.map((tr) => [tr.dataset.topic, tr.cells[3].textContent])));

before(async () => {
  ({ child: broker, publicAddr, localAddr } = await startBroker({ demo: true }));
  browser = await launchBrowser();
  page = browser.context.pages()[0] || (await browser.context.newPage());
  page.on("pageerror", (e) => { throw e; });
  page.on("websocket", (ws) => {
    ws.on("framesent", (f) => sent.push(JSON.parse(f.payload)));
    ws.on("framereceived", (f) => received.push(JSON.parse(f.payload)));
  });
  await page.goto(`http://${publicAddr}/`);
});

after(async () => {
  await browser?.close();
  await stopBroker(broker);
});

test("the board fills with rows whose prices change, over deltas", async () => {
  await waitFor("live indicator", () => page.$eval("#status", (e) => e.dataset.state === "live"));
  const first = await waitFor("50 rows", async () => {
    const rows = await lastPrices();
    return Object.keys(rows).length >= 50 ? rows : null;
  });
  await waitFor("prices to move", async () => {
    const now = await lastPrices();
    return Object.keys(first).filter((t) => now[t] !== first[t]).length >= 5;
  });
  const rate = await waitFor("a message rate", async () => Number((await page.textContent("#rate")).replace(/\D/g, "")) > 0);
  assert.ok(rate);
  assert.equal(sent.find((f) => f.op === "subscribe")?.delta, true, "the board asks for deltas");
  await waitFor("delta frames", () => received.some((f) => f.type === "msg" && f.delta));
  mkdirSync(join(ROOT, "target"), { recursive: true });
  await page.waitForTimeout(800); // let a few flashes show
  await page.screenshot({ path: join(ROOT, "target", "board.png") });
  if (process.env.UPDATE_SCREENSHOT) copyFileSync(join(ROOT, "target", "board.png"), join(ROOT, "docs", "board.png"));
});

test("adding a symbol subscribes to it", async () => {
  await page.fill("#symbol", "fx/EURUSD");
  await page.click("#add button");
  await waitFor("the new chip", () => page.$('[data-pattern="fx/EURUSD"]'));
  await waitFor("the subscribe", () => sent.some((f) => f.op === "subscribe" && f.topics.includes("fx/EURUSD")));
  await publish(localAddr, "fx/EURUSD", { bid: 1.0841, ask: 1.0843, last: 1.0842 });
  const price = await waitFor("the fx/EURUSD row", async () => (await lastPrices())["fx/EURUSD"]);
  assert.equal(price, "1.08");
});

test("a row's rate control resubscribes its topic with max_rate; the latest value still arrives", async () => {
  await page.selectOption('tr[data-topic="fx/EURUSD"] select.max-rate', "1");
  const resubscribe = await waitFor("a subscribe with max_rate", () =>
    sent.find((f) => f.op === "subscribe" && f.topics.includes("fx/EURUSD") && f.max_rate === 1));
  assert.deepEqual(resubscribe.topics, ["fx/EURUSD"]);
  assert.ok(sent.some((f) => f.op === "unsubscribe" && f.topics.includes("fx/EURUSD")), "the old subscription goes");
  assert.equal(await page.textContent('[data-pattern="fx/EURUSD"] .chip-rate'), "1/s");
  await waitFor("the new subscription's ack", () => received.some((f) => f.type === "subscribed" && f.id === resubscribe.id));

  // A burst of 20 updates: at 1/s the broker merges them, and the last one arrives.
  const from = received.length;
  for (let i = 1; i <= 20; i++) await publish(localAddr, "fx/EURUSD", { bid: 1.1, ask: 1.2, last: 1 + i / 100 });
  await waitFor("the burst's last value", async () => (await lastPrices())["fx/EURUSD"] === "1.20");
  const frames = received.slice(from).filter((f) => f.type === "msg" && f.topic === "fx/EURUSD");
  assert.ok(frames.length < 20, `merged: ${frames.length} frames for 20 updates`);
  // The choice survives a reload.
  const saved = await page.evaluate(() => JSON.parse(localStorage.getItem("tickwire.subscriptions")));
  assert.deepEqual(saved.find((s) => s.pattern === "fx/EURUSD"), { pattern: "fx/EURUSD", maxRate: 1 });
});

test("after a broker restart the page reconnects, updates again and says what it recovered", async () => {
  await stopBroker(broker);
  await waitFor("the indicator to go down", () => page.$eval("#status", (e) => e.dataset.state !== "live"));
  ({ child: broker } = await startBroker({ listen: publicAddr, localListen: localAddr, demo: true }));
  await waitFor("reconnection", () => page.$eval("#status", (e) => e.dataset.state === "live"), 20000);
  // A restarted broker has a new epoch: nothing can be replayed, every row gets a snapshot.
  const note = await waitFor("the recovery note", () => page.$eval("#recovery", (e) => !e.hidden && e.dataset));
  assert.equal(Number(note.recovered), 0);
  assert.ok(Number(note.snapshotted) >= 50, `resnapshotted ${note.snapshotted}`);
  assert.match(await page.textContent("#recovery"), /recovered 0 topics \/ resnapshotted \d+ \(broker restarted\)/);
  const before = await lastPrices();
  await waitFor("updates after the restart", async () => {
    const now = await lastPrices();
    return Object.keys(before).filter((t) => t.startsWith("quotes/") && now[t] !== before[t]).length >= 5;
  });
  // The explicit subscription came back too: publish to it on the new broker.
  await publish(localAddr, "fx/EURUSD", { last: 1.5 });
  await waitFor("fx/EURUSD after the restart", async () => (await lastPrices())["fx/EURUSD"] === "1.50");
});
