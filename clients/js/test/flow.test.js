// Outgoing flow: requests wait for an open socket, are held while bufferedAmount is high, and
// the queue is bounded.
import test from "node:test";
import assert from "node:assert/strict";
import { connect } from "../tickwire.js";
import { setup, ack, flush, pendingDelays } from "./fake_socket.js";

test("a subscribe made while connecting waits for the open", async () => {
  const { Socket, tw } = await setup(connect);
  const sub = tw.subscribe("quotes/AAPL", () => {});
  await flush();
  assert.equal(Socket.last.sent.length, 0);
  Socket.last.open();
  const frame = Socket.last.lastFrame("subscribe");
  assert.deepEqual(frame.topics, ["quotes/AAPL"]);
  ack(Socket.last, frame);
  await sub.ready;
  tw.close();
});

test("requests are held while bufferedAmount is above maxBufferedAmount, retried on a timer, in order", async () => {
  const { Socket, clock, tw } = await setup(connect, { maxBufferedAmount: 1000, retryInterval: 50 });
  const sock = Socket.last;
  sock.open();
  sock.bufferedAmount = 1001;
  const sub = tw.subscribe("quotes/AAPL", () => {});
  await flush();
  sub.unsubscribe();
  assert.equal(sock.sent.length, 0, "nothing sent into a full socket");
  assert.deepEqual(pendingDelays(clock).filter((d) => d === 50), [50], "one retry timer");
  clock.advance(50);
  assert.equal(sock.sent.length, 0);
  sock.bufferedAmount = 1000; // at the threshold is fine
  clock.advance(50);
  assert.deepEqual(sock.frames().map((f) => f.op), ["subscribe", "unsubscribe"]);
  assert.equal(pendingDelays(clock).includes(50), false, "no retry timer once drained");
  tw.close();
});

test("the queue is bounded: past maxQueue a request is dropped with an error event", async () => {
  const { Socket, clock, tw, errors } = await setup(connect, { maxQueue: 2, maxBufferedAmount: 0 });
  const sock = Socket.last;
  sock.open();
  sock.bufferedAmount = 1;
  const a = tw.subscribe("a", () => {});
  await flush();
  const b = tw.subscribe("b", () => {});
  await flush();
  const c = tw.subscribe("c", () => {});
  await flush();
  assert.equal(errors.filter((e) => e.code === "queue_overflow").length, 1);
  await assert.rejects(c.ready, { code: "queue_overflow" });
  assert.equal(c.active, false);
  sock.bufferedAmount = 0;
  clock.advance(100);
  const frames = sock.frames("subscribe");
  assert.deepEqual(frames.map((f) => f.topics), [["a"], ["b"]]);
  for (const f of frames) ack(sock, f);
  await Promise.all([a.ready, b.ready]);
  tw.close();
});

test("held requests die with their connection; the subscription table resends them once", async () => {
  const { Socket, clock, tw } = await setup(connect);
  const sock = Socket.last;
  sock.open();
  sock.bufferedAmount = 10_000_000;
  tw.subscribe("quotes/AAPL", () => {});
  await flush();
  sock.serverClose(1006);
  clock.advance(pendingDelays(clock)[0]);
  const next = Socket.last;
  next.open();
  assert.equal(sock.sent.length, 0);
  assert.deepEqual(next.frames().map((f) => [f.op, f.topics]), [["subscribe", ["quotes/AAPL"]]]);
  tw.close();
});

test("a non-JSON frame is reported and ignored", async () => {
  const { Socket, tw, errors } = await setup(connect);
  Socket.last.open();
  Socket.last.deliver("{not json");
  assert.equal(errors.at(-1).code, "bad_frame");
  assert.equal(tw.state, "open");
  tw.close();
});
