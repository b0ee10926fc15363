// End-to-end: `tickwire --demo` on free ports, the quote board in Debian's headless Chromium
// (playwright-core, never a downloaded browser). Checks that rows fill and prices move, that
// adding a symbol subscribes to it, and that the page reconnects after a broker restart.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, mkdirSync, copyFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const BINARY = join(ROOT, "target", "release", "tickwire");
const CHROMIUM = "/usr/bin/chromium";

let broker, browser, page, userDataDir, publicAddr, localAddr;

// Starts the broker; resolves with the addresses it prints.
function startBroker(listen = "127.0.0.1:0", localListen = "127.0.0.1:0") {
  return new Promise((resolve, reject) => {
    const child = spawn(BINARY, ["--listen", listen, "--local-listen", localListen, "--demo", "--log-level", "warn"], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    const timer = setTimeout(() => reject(new Error(`tickwire did not start: ${out}`)), 15000);
    child.on("exit", (code) => reject(new Error(`tickwire exited with ${code}: ${out}`)));
    child.stdout.on("data", (chunk) => {
      out += chunk;
      const pub = out.match(/subscribe:\s+wss?:\/\/([^/\s]+)\/ws/);
      const loc = out.match(/publish:\s+http:\/\/([^/\s]+)\/publish/);
      if (pub && loc) {
        clearTimeout(timer);
        resolve({ child, publicAddr: pub[1], localAddr: loc[1] });
      }
    });
  });
}

function stopBroker(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.removeAllListeners("exit");
    child.on("exit", () => resolve());
    child.kill("SIGTERM");
  });
}

async function waitFor(what, check, ms = 10000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// The board's rows: topic -> last price text.
const lastPrices = () =>
  page.$$eval("#board tr", (trs) => Object.fromEntries(trs.map((tr) => [tr.dataset.topic, tr.cells[3].textContent])));

before(async () => {
  ({ child: broker, publicAddr, localAddr } = await startBroker());
  userDataDir = mkdtempSync(join(tmpdir(), "tickwire-chromium-"));
  browser = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1200, height: 1500 },
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
  page = browser.pages()[0] || (await browser.newPage());
  page.on("pageerror", (e) => { throw e; });
  await page.goto(`http://${publicAddr}/`);
});

after(async () => {
  await browser?.close();
  if (broker) await stopBroker(broker);
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
});

test("the board fills with rows whose prices change", async () => {
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
  mkdirSync(join(ROOT, "target"), { recursive: true });
  await page.waitForTimeout(800); // let a few flashes show
  await page.screenshot({ path: join(ROOT, "target", "board.png") });
  if (process.env.UPDATE_SCREENSHOT) copyFileSync(join(ROOT, "target", "board.png"), join(ROOT, "docs", "board.png"));
});

test("adding a symbol subscribes to it", async () => {
  await page.fill("#symbol", "fx/EURUSD");
  await page.click("#add button");
  await waitFor("the new chip", () => page.$('[data-pattern="fx/EURUSD"]'));
  const res = await fetch(`http://${localAddr}/publish?topic=fx/EURUSD`, {
    method: "POST",
    body: JSON.stringify({ bid: 1.0841, ask: 1.0843, last: 1.0842 }),
  });
  assert.equal(res.status, 202);
  const price = await waitFor("the fx/EURUSD row", async () => (await lastPrices())["fx/EURUSD"]);
  assert.equal(price, "1.08");
});

test("after a broker restart the page reconnects and updates again", async () => {
  await stopBroker(broker);
  await waitFor("the indicator to go down", () => page.$eval("#status", (e) => e.dataset.state !== "live"));
  ({ child: broker } = await startBroker(publicAddr, localAddr));
  await waitFor("reconnection", () => page.$eval("#status", (e) => e.dataset.state === "live"), 20000);
  const before = await lastPrices();
  await waitFor("updates after the restart", async () => {
    const now = await lastPrices();
    return Object.keys(before).filter((t) => t.startsWith("quotes/") && now[t] !== before[t]).length >= 5;
  });
  // The explicit subscription came back too: publish to it on the new broker.
  const res = await fetch(`http://${localAddr}/publish?topic=fx/EURUSD`, { method: "POST", body: '{"last":1.5}' });
  assert.equal(res.status, 202);
  await waitFor("fx/EURUSD after the restart", async () => (await lastPrices())["fx/EURUSD"] === "1.50");
});
