// Connection lifecycle: states, backoff, dead-connection detection, close().
import test from "node:test";
import assert from "node:assert/strict";
import { connect, TickwireClient } from "../tickwire.js";
import { setup, pendingDelays, flush } from "./fake_socket.js";

test("states: connecting -> open -> reconnecting -> open -> closed, and close() stops reconnects", async () => {
  const { Socket, clock, tw, states, errors } = await setup(connect);
  assert.ok(tw instanceof TickwireClient);
  assert.equal(Socket.instances.length, 1);
  assert.equal(Socket.last.url, "ws://test/ws");
  assert.deepEqual(Socket.last.protocols, ["tickwire.v1"]);
  assert.deepEqual(states, ["connecting"]);

  Socket.last.open();
  assert.equal(tw.state, "open");
  Socket.last.serverClose(1001, "going away");
  assert.equal(tw.state, "reconnecting");
  assert.equal(errors.at(-1).code, "disconnected");
  assert.equal(errors.at(-1).closeCode, 1001);

  clock.advance(pendingDelays(clock)[0]);
  assert.equal(Socket.instances.length, 2);
  Socket.last.open();
  assert.deepEqual(states, ["connecting", "open", "reconnecting", "open"]);

  const sock = Socket.last;
  tw.close();
  assert.deepEqual(states, ["connecting", "open", "reconnecting", "open", "closed"]);
  assert.deepEqual(sock.closeCalls, [{ code: 1000, reason: undefined }]);
  assert.equal(clock.pending.size, 0, "no timer left running");
  clock.advance(10 * 60_000);
  assert.equal(Socket.instances.length, 2, "no reconnect after close()");
  tw.close(); // idempotent
  assert.equal(states.at(-1), "closed");
  assert.equal(states.length, 5);
});

test("close() while a reconnect is pending cancels it; close() before the first attempt makes no socket", async () => {
  const { Socket, clock, tw } = await setup(connect);
  Socket.last.serverClose(1006);
  assert.equal(pendingDelays(clock).length, 1);
  tw.close();
  clock.advance(60_000);
  assert.equal(Socket.instances.length, 1);

  const { fakeSocketClass } = await import("./fake_socket.js");
  const Other = fakeSocketClass();
  const early = connect("ws://x/ws", { WebSocket: Other });
  const seen = [];
  early.on("state", (s) => seen.push(s));
  early.close();
  await flush();
  assert.equal(Other.instances.length, 0);
  assert.deepEqual(seen, ["closed"]);
});

test("protocols option, and the token goes on the URL with ? or &", async () => {
  const a = await setup(connect, { protocols: ["x.v2"], token: "t/1+" });
  assert.deepEqual(a.Socket.last.protocols, ["x.v2"]);
  assert.equal(a.Socket.last.url, "ws://test/ws?token=t%2F1%2B");
  const b = await setup(connect, { url: "ws://test/ws?compress=0", token: "abc" });
  assert.equal(b.Socket.last.url, "ws://test/ws?compress=0&token=abc");
  a.tw.close();
  b.tw.close();
});

test("backoff: full jitter within [0, min(maxDelay, minDelay * 2^attempt)), capped", async () => {
  const { Socket, clock, tw } = await setup(connect, { minDelay: 100, maxDelay: 1000 });
  const delays = [];
  for (let i = 0; i < 7; i++) {
    clock.rand = 0.999;
    Socket.last.serverClose(1006); // fails before it ever opens
    const [d] = pendingDelays(clock);
    delays.push(d);
    clock.advance(d);
  }
  const caps = [100, 200, 400, 800, 1000, 1000, 1000];
  delays.forEach((d, i) => assert.ok(Math.abs(d - 0.999 * caps[i]) < 1e-9, `attempt ${i}: ${d}`));

  // The delay is random * cap: the jitter spans the whole window, from 0 up.
  clock.rand = 0;
  Socket.last.serverClose(1006);
  assert.deepEqual(pendingDelays(clock), [0]);
  clock.advance(0);
  clock.rand = 0.25;
  Socket.last.serverClose(1006);
  assert.deepEqual(pendingDelays(clock), [250]);
  tw.close();
});

test("backoff resets after a connection stayed open for stableAfter, not before", async () => {
  const { Socket, clock, tw } = await setup(connect, { minDelay: 100, maxDelay: 10_000, stableAfter: 5000 });
  clock.rand = 0.5;
  for (let i = 0; i < 4; i++) { Socket.last.serverClose(1006); clock.advance(pendingDelays(clock)[0]); }
  // attempt 4 would be 0.5 * 1600; a short-lived open does not reset it
  Socket.last.open();
  clock.advance(4999);
  Socket.last.serverClose(1006);
  assert.deepEqual(pendingDelays(clock), [800]);
  clock.advance(800);
  Socket.last.open();
  clock.advance(5000);
  Socket.last.serverClose(1001);
  assert.deepEqual(pendingDelays(clock), [50], "back to minDelay after a stable connection");
  tw.close();
});

test("ping: a pong or any other frame keeps the connection; silence closes it and reconnects", async () => {
  const { Socket, clock, tw, errors, states } = await setup(connect, { pingInterval: 1000, pongTimeout: 300 });
  const sock = Socket.last;
  sock.open();
  clock.advance(999);
  assert.equal(sock.frames("ping").length, 0);
  clock.advance(1);
  const ping = sock.lastFrame("ping");
  assert.ok(ping, "ping sent after pingInterval");
  sock.deliver({ type: "pong", id: ping.id });
  clock.advance(300);
  assert.equal(tw.state, "open");

  clock.advance(700); // second ping; a market data frame arrives instead of the pong
  assert.equal(sock.frames("ping").length, 2);
  sock.deliver({ type: "msg", topic: "quotes/AAPL", seq: 1, data: {} });
  clock.advance(300);
  assert.equal(tw.state, "open");

  clock.advance(700); // third ping: nothing comes back
  assert.equal(sock.frames("ping").length, 3);
  clock.advance(299);
  assert.equal(tw.state, "open");
  clock.advance(1);
  assert.equal(tw.state, "reconnecting");
  assert.equal(errors.at(-1).code, "ping_timeout");
  assert.deepEqual(sock.closeCalls, [{ code: 1000, reason: undefined }], "the dead socket is closed");
  sock.serverClose(1006); // its late close event changes nothing
  assert.equal(states.filter((s) => s === "reconnecting").length, 1);
  clock.advance(pendingDelays(clock)[0]);
  assert.equal(Socket.instances.length, 2);
  tw.close();
});

test("a socket that never opens is given up after connectTimeout", async () => {
  const { Socket, clock, tw, errors } = await setup(connect, { connectTimeout: 2000 });
  clock.advance(1999);
  assert.equal(tw.state, "connecting");
  clock.advance(1);
  assert.equal(tw.state, "reconnecting");
  assert.equal(errors.at(-1).code, "connect_timeout");
  assert.equal(Socket.instances[0].closeCalls.length, 1);
  tw.close();
});

test("API misuse: unknown event names and bad arguments throw; subscribe after close rejects ready", async () => {
  const { tw } = await setup(connect);
  assert.throws(() => tw.on("message", () => {}), TypeError);
  assert.throws(() => tw.subscribe("", () => {}), TypeError);
  assert.throws(() => tw.subscribe("quotes/AAPL"), TypeError);
  const fn = () => {};
  assert.equal(tw.on("lag", fn), tw);
  assert.equal(tw.off("lag", fn), tw);
  tw.close();
  const sub = tw.subscribe("quotes/AAPL", () => {});
  assert.equal(sub.active, false);
  await assert.rejects(sub.ready, { code: "closed" });
  assert.throws(() => connect("ws://x", { WebSocket: undefined, timers: {} }), /WebSocket/);
});

test("listener exceptions do not break the client", async () => {
  const { Socket, tw } = await setup(connect);
  const thrown = [];
  // The runner's own handler would count the rethrown error against the file; stand in for it.
  const runners = process.listeners("uncaughtException");
  process.removeAllListeners("uncaughtException");
  const onUncaught = (err) => thrown.push(err);
  process.on("uncaughtException", onUncaught);
  try {
    const buggy = () => { throw new Error("listener bug"); };
    tw.on("state", buggy);
    Socket.last.open();
    await flush();
    tw.off("state", buggy);
  } finally {
    process.off("uncaughtException", onUncaught);
    for (const fn of runners) process.on("uncaughtException", fn);
  }
  assert.equal(tw.state, "open");
  assert.deepEqual(thrown.map((e) => e.message), ["listener bug"]);
  tw.close();
});
