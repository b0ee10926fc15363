// End-to-end over TLS: `tickwire --demo --tls-cert --tls-key --jwt-key` on free ports, with a
// certificate made here by openssl, and the quote board loaded over https:// in Debian's
// headless Chromium. Chromium trusts that one certificate's key (--ignore-certificate-errors-spki-list,
// not a blanket --ignore-certificate-errors); the page opens wss:// by itself, and a token minted
// here (HS256) rides on the WebSocket URL.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHmac, createHash, X509Certificate } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startBroker, stopBroker, launchBrowser, waitFor } from "./harness.mjs";

const SECRET = "browser-test-secret-0123456789abcdefghijklmnop";

let broker, browser, page, dir, publicAddr;

const b64url = (data) => Buffer.from(data).toString("base64url");

function mint(claims) {
  const head = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64url(JSON.stringify(claims));
  const sig = createHmac("sha256", SECRET).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "tickwire-tls-browser-"));
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
    "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost",
    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], { stdio: "ignore" });
  writeFileSync(join(dir, "jwt.secret"), SECRET + "\n");
  ({ child: broker, publicAddr } = await startBroker({ demo: true,
    args: ["--tls-cert", cert, "--tls-key", key, "--jwt-key", join(dir, "jwt.secret")] }));
  // The SPKI pin Chromium accepts: base64 of the SHA-256 of the certificate's public key (DER).
  const spki = new X509Certificate(readFileSync(cert)).publicKey.export({ type: "spki", format: "der" });
  const pin = createHash("sha256").update(spki).digest("base64");
  browser = await launchBrowser([`--ignore-certificate-errors-spki-list=${pin}`]);
  page = browser.context.pages()[0] || (await browser.context.newPage());
  page.on("pageerror", (e) => { throw e; });
});

after(async () => {
  await browser?.close();
  await stopBroker(broker);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("the board loads over https and streams over wss with a token", async () => {
  const now = Math.floor(Date.now() / 1000);
  const token = mint({ sub: "browser", topics: ["quotes/#"], exp: now + 600 });
  const ws = `wss://${publicAddr}/ws?token=${token}`;
  const response = await page.goto(`https://${publicAddr}/?ws=${encodeURIComponent(ws)}`);
  assert.equal(response.status(), 200);
  const security = await response.securityDetails();
  assert.ok(["TLS 1.3", "TLS 1.2"].includes(security?.protocol), JSON.stringify(security));
  await waitFor("live indicator", () => page.$eval("#status", (e) => e.dataset.state === "live"));
  const rows = await waitFor("rows from the demo feed", async () => {
    const n = await page.$$eval("#board tr", (trs) => trs.length);
    return n >= 20 ? n : null;
  });
  assert.ok(rows >= 20);
  // Without ?ws= the page picks wss:// from https:// by itself.
  const opened = page.waitForEvent("websocket");
  await page.goto(`https://${publicAddr}/`);
  assert.equal((await opened).url(), `wss://${publicAddr}/ws`);
});

test("a bad token is refused before the upgrade (HTTP 401)", async () => {
  const res = await page.evaluate(async (addr) => {
    const r = await fetch(`https://${addr}/ws?token=not.a.token`, { headers: { Upgrade: "websocket" } });
    return { status: r.status, body: await r.text() };
  }, publicAddr);
  // fetch cannot upgrade, so the broker answers as for any GET /ws: here, 401 first.
  assert.equal(res.status, 401, res.body);
  assert.match(res.body, /invalid token/);
});
