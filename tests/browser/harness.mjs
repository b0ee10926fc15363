// What the browser tests share: the release binary on free ports, Debian's headless Chromium
// (playwright-core, never a downloaded browser), polling for a condition, publishing through the
// local API, and a TCP proxy whose connections a test can cut.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const BINARY = join(ROOT, "target", "release", "tickwire");
const CHROMIUM = "/usr/bin/chromium";

/**
 * Starts the broker (127.0.0.1 free ports unless given) and resolves with the child and the
 * addresses it prints: {child, publicAddr, localAddr}.
 */
export function startBroker({ listen = "127.0.0.1:0", localListen = "127.0.0.1:0", demo = false, args = [] } = {}) {
  return new Promise((resolve, reject) => {
    // A connection limit under the machine's open-file limit, so the broker does not warn about it.
    const argv = ["--listen", listen, "--local-listen", localListen, "--log-level", "warn", "--max-connections", "1000", ...args];
    if (demo) argv.push("--demo");
    const child = spawn(BINARY, argv, { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    const timer = setTimeout(() => reject(new Error(`tickwire did not start: ${out}`)), 15000);
    child.on("exit", (code, signal) => reject(new Error(`tickwire exited with ${code ?? signal}: ${out}`)));
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

/** Stops the broker (SIGTERM: a clean shutdown; SIGKILL: a crash) and waits for it to exit. */
export function stopBroker(child, signal = "SIGTERM") {
  return new Promise((resolve) => {
    if (!child || child.exitCode !== null || child.signalCode !== null) return resolve();
    child.removeAllListeners("exit");
    child.on("exit", () => resolve());
    child.kill(signal);
  });
}

/**
 * Debian's Chromium, headless, with a fresh profile and any `extraArgs`; close() also removes the
 * profile.
 */
export async function launchBrowser(extraArgs = []) {
  const userDataDir = mkdtempSync(join(tmpdir(), "tickwire-chromium-"));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1200, height: 1500 },
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", ...extraArgs],
  });
  return {
    context,
    async close() {
      await context.close();
      rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

/** Polls `check` every 50 ms until it returns something truthy (returned), for at most `ms`. */
export async function waitFor(what, check, ms = 10000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** POST /publish?topic= on the local API; resolves with the seq the broker gave it. */
export async function publish(localAddr, topic, data) {
  const res = await fetch(`http://${localAddr}/publish?topic=${encodeURIComponent(topic)}`, {
    method: "POST",
    body: JSON.stringify(data),
  });
  const body = await res.text();
  if (res.status !== 202) throw new Error(`publish to ${topic}: ${res.status} ${body}`);
  return JSON.parse(body).seq;
}

/**
 * A TCP proxy on a free port in front of `target` ("host:port"). `cut()` destroys every
 * connection through it (the broker stays up, the client sees its connection drop); `hold()`
 * keeps new connections waiting, unanswered, until `release()`, so an outage lasts as long as a
 * test needs.
 */
export async function startProxy(target) {
  const [host, port] = [target.slice(0, target.lastIndexOf(":")), Number(target.slice(target.lastIndexOf(":") + 1))];
  const pairs = new Set();
  let held = null; // client sockets waiting for release(), or null when not holding
  const pipe = (client) => {
    const upstream = tcpConnect(port, host);
    const pair = { client, upstream };
    pairs.add(pair);
    const end = () => { pairs.delete(pair); client.destroy(); upstream.destroy(); };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
    client.pipe(upstream);
    upstream.pipe(client);
    client.resume();
  };
  const server = createServer({ pauseOnConnect: true }, (client) => {
    if (held) held.push(client);
    else pipe(client);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    addr: `127.0.0.1:${server.address().port}`,
    get connections() { return pairs.size; },
    cut() {
      for (const { client, upstream } of pairs) { client.destroy(); upstream.destroy(); }
      pairs.clear();
    },
    hold() { held ??= []; },
    release() {
      const waiting = held ?? [];
      held = null;
      for (const client of waiting) if (!client.destroyed) pipe(client);
    },
    close() {
      this.cut();
      for (const client of held ?? []) client.destroy();
      held = null;
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
