// Subscriptions: requests, acks and refusals, routing, refcounting, deltas, lag, and recovery
// after a reconnect with `since` and `epoch`.
import test from "node:test";
import assert from "node:assert/strict";
import { connect } from "../tickwire.js";
import { setup, ack, flush, pendingDelays } from "./fake_socket.js";

async function openClient(options) {
  const env = await setup(connect, options);
  env.sock = env.Socket.last;
  env.sock.open();
  return env;
}

function collector() {
  const got = [];
  const fn = (m) => got.push(m);
  fn.got = got;
  return fn;
}

test("subscribe sends max_rate and delta, ready resolves on the ack", async () => {
  const { sock, tw } = await openClient();
  const sub = tw.subscribe("quotes/AAPL", () => {}, { maxRate: 4, delta: true });
  assert.equal(sub.pattern, "quotes/AAPL");
  await flush();
  const frame = sock.lastFrame("subscribe");
  assert.deepEqual(frame, { op: "subscribe", topics: ["quotes/AAPL"], max_rate: 4, delta: true, id: frame.id });
  let ready = false;
  sub.ready.then(() => { ready = true; });
  await flush();
  assert.equal(ready, false);
  ack(sock, frame);
  await flush();
  assert.equal(ready, true);
  assert.equal(tw.epoch, "e1");
  tw.close();
});

test("subscriptions made in one tick go out as one request per option set", async () => {
  const { sock, tw } = await openClient();
  tw.subscribe("quotes/AAPL", () => {}, { maxRate: 4 });
  tw.subscribe("quotes/MSFT", () => {}, { maxRate: 4 });
  tw.subscribe("news/#", () => {});
  await flush();
  const frames = sock.frames("subscribe").map(({ id, ...f }) => f);
  assert.deepEqual(frames, [
    { op: "subscribe", topics: ["quotes/AAPL", "quotes/MSFT"], max_rate: 4 },
    { op: "subscribe", topics: ["news/#"] },
  ]);
  tw.close();
});

test("ready rejects with the server's code and message; the subscription ends", async () => {
  const { Socket, sock, clock, tw, errors } = await openClient();
  const sub = tw.subscribe("quotes//AAPL", () => {});
  await flush();
  const frame = sock.lastFrame("subscribe");
  sock.deliver({ type: "error", code: "invalid_topic", message: "topic level is empty: 'quotes//AAPL'", id: frame.id });
  await assert.rejects(sub.ready, (err) => {
    assert.ok(err instanceof Error);
    assert.equal(err.code, "invalid_topic");
    assert.equal(err.message, "topic level is empty: 'quotes//AAPL'");
    return true;
  });
  assert.equal(sub.active, false);
  assert.equal(errors.at(-1).code, "invalid_topic");
  assert.deepEqual(errors.at(-1).topics, ["quotes//AAPL"]);
  // Gone from the table: a reconnect does not ask for it again.
  sock.serverClose(1001);
  clock.advance(pendingDelays(clock)[0]);
  Socket.last.open();
  assert.notEqual(Socket.last, sock);
  assert.equal(Socket.last.frames("subscribe").length, 0);
  tw.close();
});

test("a refused request of several patterns is retried one by one to find the refused one", async () => {
  const { Socket, clock, tw } = await setup(connect);
  const ok = tw.subscribe("quotes/AAPL", () => {});
  const bad = tw.subscribe("vip/feed", () => {});
  Socket.last.open(); // both go out together on open
  const sock = Socket.last;
  const batch = sock.lastFrame("subscribe");
  assert.deepEqual(batch.topics, ["quotes/AAPL", "vip/feed"]);
  sock.deliver({ type: "error", code: "forbidden", message: "not entitled", id: batch.id });
  const singles = sock.frames("subscribe").slice(1);
  assert.deepEqual(singles.map((f) => f.topics), [["quotes/AAPL"], ["vip/feed"]]);
  ack(sock, singles[0]);
  sock.deliver({ type: "error", code: "forbidden", message: "not entitled to vip/feed", id: singles[1].id });
  await ok.ready;
  await assert.rejects(bad.ready, { code: "forbidden", message: "not entitled to vip/feed" });
  assert.equal(ok.active, true);
  clock.advance(0);
  tw.close();
});

test("rate_limited subscribe is sent again a second later", async () => {
  const { sock, clock, tw } = await openClient();
  const sub = tw.subscribe("quotes/AAPL", () => {});
  await flush();
  const first = sock.lastFrame("subscribe");
  sock.deliver({ type: "error", code: "rate_limited", message: "slow down", id: first.id });
  clock.advance(999);
  assert.equal(sock.frames("subscribe").length, 1);
  clock.advance(1);
  const again = sock.lastFrame("subscribe");
  assert.notEqual(again.id, first.id);
  assert.deepEqual(again.topics, ["quotes/AAPL"]);
  ack(sock, again);
  await sub.ready;
  tw.close();
});

test("routing: a message reaches every subscription whose pattern matches, once each", async () => {
  const { sock, tw } = await openClient();
  const exact = collector();
  const plus = collector();
  const hash = collector();
  tw.subscribe("quotes/AAPL", exact);
  tw.subscribe("quotes/+", plus);
  tw.subscribe("quotes/#", hash);
  await flush();
  ack(sock, sock.lastFrame("subscribe"));
  await flush();
  sock.deliver({ type: "msg", topic: "quotes/AAPL", seq: 1, snapshot: true, data: { bid: 1 } });
  sock.deliver({ type: "msg", topic: "quotes/MSFT", seq: 1, snapshot: true, data: { bid: 2 } });
  sock.deliver({ type: "msg", topic: "quotes", seq: 1, snapshot: true, data: "index" });
  sock.deliver({ type: "msg", topic: "news/AAPL", seq: 1, data: "not ours" });
  assert.deepEqual(exact.got.map((m) => m.topic), ["quotes/AAPL"]);
  assert.deepEqual(plus.got.map((m) => m.topic), ["quotes/AAPL", "quotes/MSFT"]);
  assert.deepEqual(hash.got.map((m) => m.topic), ["quotes/AAPL", "quotes/MSFT", "quotes"]);
  assert.deepEqual(exact.got[0], { topic: "quotes/AAPL", seq: 1, data: { bid: 1 }, snapshot: true });
  tw.close();
});

test("same pattern twice: one server subscription, refcounted; the second gets the cached data", async () => {
  const { sock, tw } = await openClient();
  const a = collector();
  const b = collector();
  const subA = tw.subscribe("quotes/+", a, { delta: true });
  await flush();
  const frame = sock.lastFrame("subscribe");
  ack(sock, frame);
  sock.deliver({ type: "msg", topic: "quotes/AAPL", seq: 5, snapshot: true, data: { bid: 1 } });

  const subB = tw.subscribe("quotes/+", b);
  await subB.ready;
  assert.equal(sock.frames("subscribe").length, 1, "no second subscribe");
  assert.deepEqual(b.got, [{ topic: "quotes/AAPL", seq: 5, data: { bid: 1 }, snapshot: true }]);

  sock.deliver({ type: "msg", topic: "quotes/AAPL", seq: 6, delta: { bid: 2 } });
  assert.deepEqual(a.got.map((m) => m.data.bid), [1, 2]);
  assert.deepEqual(b.got.map((m) => m.data.bid), [1, 2]);

  subA.unsubscribe();
  assert.equal(sock.frames("unsubscribe").length, 0, "still used by subB");
  sock.deliver({ type: "msg", topic: "quotes/AAPL", seq: 7, delta: { bid: 3 } });
  assert.equal(a.got.length, 2);
  assert.equal(b.got.length, 3);
  subB.unsubscribe();
  subB.unsubscribe(); // twice is harmless
  const unsub = sock.frames("unsubscribe");
  assert.deepEqual(unsub.map(({ id, ...f }) => f), [{ op: "unsubscribe", topics: ["quotes/+"] }]);
  sock.deliver({ type: "unsubscribed", topics: ["quotes/+"], id: unsub[0].id });
  sock.deliver({ type: "msg", topic: "quotes/AAPL", seq: 8, data: { bid: 4 } }); // in flight before the unsubscribe
  assert.equal(b.got.length, 3);
  tw.close();
});

test("a new pattern covering topics already followed gets them from the cache, with since", async () => {
  const { sock, tw } = await openClient();
  tw.subscribe("quotes/AAPL", () => {});
  await flush();
  ack(sock, sock.lastFrame("subscribe"));
  sock.deliver({ type: "msg", topic: "quotes/AAPL", seq: 9, snapshot: true, data: { bid: 1 } });
  const wide = collector();
  const sub = tw.subscribe("quotes/+", wide);
  await flush();
  const frame = sock.lastFrame("subscribe");
  assert.deepEqual(frame.since, { "quotes/AAPL": 9 });
  assert.equal(frame.epoch, "e1");
  ack(sock, frame, { recovered: ["quotes/AAPL"] });
  await sub.ready;
  assert.deepEqual(wide.got, [{ topic: "quotes/AAPL", seq: 9, data: { bid: 1 }, snapshot: true }]);
  tw.close();
});

test("unsubscribe before the ack rejects ready and still tells the server", async () => {
  const { sock, tw } = await openClient();
  const sub = tw.subscribe("quotes/AAPL", () => {});
  await flush();
  const frame = sock.lastFrame("subscribe");
  sub.unsubscribe();
  await assert.rejects(sub.ready, { code: "unsubscribed" });
  assert.deepEqual(sock.lastFrame("unsubscribe").topics, ["quotes/AAPL"]);
  ack(sock, frame); // the late ack changes nothing
  assert.equal(sub.active, false);
  tw.close();
});

test("the server revoking a pattern (unsubscribed with a reason) ends those subscriptions", async () => {
  const { sock, tw, errors } = await openClient();
  const got = collector();
  const sub = tw.subscribe("quotes/X", got);
  const keep = tw.subscribe("quotes/Y", () => {});
  await flush();
  ack(sock, sock.lastFrame("subscribe"));
  await sub.ready;
  sock.deliver({ type: "unsubscribed", topics: ["quotes/X"], reason: "forbidden" });
  assert.equal(sub.active, false);
  assert.equal(keep.active, true);
  assert.equal(errors.at(-1).code, "forbidden");
  assert.deepEqual(errors.at(-1).topics, ["quotes/X"]);
  sock.deliver({ type: "msg", topic: "quotes/X", seq: 1, data: 1 });
  assert.equal(got.got.length, 0);
  tw.close();
});

test("deltas: merged into the last data (nested, null removes, arrays replace); callbacks get full data", async () => {
  const { sock, tw, errors } = await openClient();
  const got = collector();
  tw.subscribe("book/AAPL", got, { delta: true });
  await flush();
  ack(sock, sock.lastFrame("subscribe"));
  const first = { bid: { px: 189.1, qty: 100 }, ask: { px: 189.2, qty: 50 }, levels: [1, 2, 3], venue: "X", halted: false };
  sock.deliver({ type: "msg", topic: "book/AAPL", seq: 42, snapshot: true, data: first });
  sock.deliver({ type: "msg", topic: "book/AAPL", seq: 43, delta: { bid: { px: 189.15 }, levels: [4], venue: null } });
  sock.deliver({ type: "msg", topic: "book/AAPL", seq: 44, delta: { ask: { qty: null, size: 7 }, halted: true } });
  sock.deliver({ type: "msg", topic: "book/AAPL", seq: 45, data: { bid: 1 } }); // a full message replaces
  sock.deliver({ type: "msg", topic: "book/AAPL", seq: 46, delta: { ask: 2 } });
  assert.deepEqual(got.got.map((m) => [m.seq, m.data, m.snapshot]), [
    [42, first, true],
    [43, { bid: { px: 189.15, qty: 100 }, ask: { px: 189.2, qty: 50 }, levels: [4], halted: false }, false],
    [44, { bid: { px: 189.15, qty: 100 }, ask: { px: 189.2, size: 7 }, levels: [4], halted: true }, false],
    [45, { bid: 1 }, false],
    [46, { bid: 1, ask: 2 }, false],
  ]);
  assert.equal(first.venue, "X", "data handed out earlier is never mutated");
  assert.equal(errors.length, 0);
  tw.close();
});

test("a delta without its base (seq-1) is not guessed: error, then reconnect to resync", async () => {
  const { Socket, sock, clock, tw, errors } = await openClient();
  const got = collector();
  tw.subscribe("quotes/AAPL", got, { delta: true });
  await flush();
  ack(sock, sock.lastFrame("subscribe"));
  sock.deliver({ type: "msg", topic: "quotes/AAPL", seq: 10, snapshot: true, data: { bid: 1 } });
  sock.deliver({ type: "msg", topic: "quotes/AAPL", seq: 12, delta: { bid: 2 } });
  assert.equal(got.got.length, 1);
  assert.equal(errors.at(-1).code, "delta_base_missing");
  assert.equal(tw.state, "reconnecting");
  clock.advance(pendingDelays(clock)[0]);
  Socket.last.open();
  assert.deepEqual(Socket.last.lastFrame("subscribe").since, { "quotes/AAPL": 10 });
  tw.close();
});

test("lag: a seq gap emits {topic, from, to}; snapshots, replay starts and duplicates do not", async () => {
  const { sock, tw, lags } = await openClient();
  const got = collector();
  tw.subscribe("quotes/+", got, { maxRate: 4 });
  await flush();
  ack(sock, sock.lastFrame("subscribe"));
  const msg = (seq, extra = {}) => sock.deliver({ type: "msg", topic: "quotes/AAPL", seq, data: seq, ...extra });
  msg(1, { snapshot: true });
  msg(2);
  msg(5); // 3 and 4 were merged
  msg(5); // duplicate: dropped
  msg(4); // late: dropped
  msg(9, { snapshot: true }); // a snapshot is not a gap
  msg(10);
  sock.deliver({ type: "msg", topic: "quotes/MSFT", seq: 30, data: 0 }); // first sight of a topic: no gap
  assert.deepEqual(lags, [{ topic: "quotes/AAPL", from: 2, to: 5 }]);
  assert.deepEqual(got.got.filter((m) => m.topic === "quotes/AAPL").map((m) => m.seq), [1, 2, 5, 9, 10]);
  tw.close();
});

test("reconnect: one subscribe per option set with since and epoch; recovered topics replay, others snapshot", async () => {
  const { Socket, sock, clock, tw, lags } = await openClient();
  const aapl = collector();
  const quotes = collector();
  const news = collector();
  tw.subscribe("quotes/AAPL", aapl, { maxRate: 4, delta: true });
  tw.subscribe("quotes/+", quotes, { maxRate: 4, delta: true });
  tw.subscribe("news/#", news);
  await flush();
  for (const f of sock.frames("subscribe")) ack(sock, f, { epoch: "k3x9q" });
  sock.deliver({ type: "msg", topic: "quotes/AAPL", seq: 42, snapshot: true, data: { bid: 1, ask: 2 } });
  sock.deliver({ type: "msg", topic: "quotes/MSFT", seq: 7, snapshot: true, data: { bid: 3 } });
  sock.deliver({ type: "msg", topic: "news/tech/AAPL", seq: 3, data: "hello" });

  sock.serverClose(1001, "restart");
  clock.advance(pendingDelays(clock)[0]);
  const next = Socket.last;
  assert.notEqual(next, sock);
  next.open();
  const frames = next.frames("subscribe");
  assert.equal(frames.length, 2);
  assert.deepEqual(frames.map(({ id, ...f }) => f), [
    { op: "subscribe", topics: ["quotes/AAPL", "quotes/+"], max_rate: 4, delta: true, since: { "quotes/AAPL": 42, "quotes/MSFT": 7 }, epoch: "k3x9q" },
    { op: "subscribe", topics: ["news/#"], since: { "news/tech/AAPL": 3 }, epoch: "k3x9q" },
  ]);

  ack(next, frames[0], { epoch: "k3x9q", recovered: ["quotes/AAPL"] });
  ack(next, frames[1], { epoch: "k3x9q", recovered: ["news/tech/AAPL"] });
  next.deliver({ type: "msg", topic: "quotes/AAPL", seq: 43, data: { bid: 1.5, ask: 2 } }); // replay
  next.deliver({ type: "msg", topic: "quotes/AAPL", seq: 44, delta: { bid: 1.6 } }); // live, delta
  next.deliver({ type: "msg", topic: "quotes/MSFT", seq: 20, snapshot: true, data: { bid: 4 } }); // history gone
  next.deliver({ type: "msg", topic: "news/tech/AAPL", seq: 4, data: "again" });

  assert.deepEqual(aapl.got.map((m) => [m.seq, m.snapshot, m.data]), [
    [42, true, { bid: 1, ask: 2 }],
    [43, false, { bid: 1.5, ask: 2 }],
    [44, false, { bid: 1.6, ask: 2 }],
  ]);
  assert.deepEqual(quotes.got.map((m) => [m.topic, m.seq, m.snapshot]), [
    ["quotes/AAPL", 42, true], ["quotes/MSFT", 7, true],
    ["quotes/AAPL", 43, false], ["quotes/AAPL", 44, false], ["quotes/MSFT", 20, true],
  ]);
  assert.deepEqual(news.got.map((m) => m.seq), [3, 4]);
  assert.deepEqual(lags, [], "nothing lost, nothing reported");
  tw.close();
});

test("recovered event: once per reconnect, after every resubscription is answered", async () => {
  const { Socket, sock, clock, tw } = await openClient();
  const events = [];
  tw.on("recovered", (r) => events.push(r));
  tw.subscribe("quotes/+", () => {}, { delta: true });
  tw.subscribe("news/#", () => {});
  await flush();
  for (const f of sock.frames("subscribe")) ack(sock, f);
  assert.deepEqual(events, [], "the first connection recovers nothing");
  sock.deliver({ type: "msg", topic: "quotes/AAPL", seq: 4, snapshot: true, data: 1 });
  sock.deliver({ type: "msg", topic: "quotes/MSFT", seq: 9, snapshot: true, data: 2 });
  sock.deliver({ type: "msg", topic: "news/x", seq: 1, data: "n" });

  sock.serverClose(1006);
  clock.advance(pendingDelays(clock)[0]);
  const next = Socket.last;
  next.open();
  const [quotes, news] = next.frames("subscribe");
  ack(next, quotes, { recovered: ["quotes/AAPL"] }); // MSFT's history is gone: a snapshot follows
  assert.deepEqual(events, [], "news/# is not answered yet");
  // Refused for the request rate: sent again a second later, and waited for.
  next.deliver({ type: "error", code: "rate_limited", message: "slow down", id: news.id });
  assert.deepEqual(events, []);
  clock.advance(1000);
  ack(next, next.lastFrame("subscribe"), { recovered: ["news/x"] });
  assert.deepEqual(events, [{ recovered: ["quotes/AAPL", "news/x"], snapshotted: ["quotes/MSFT"], epochChanged: false }]);

  // A restarted server (another epoch) replays nothing: everything comes back as a snapshot.
  next.serverClose(1001);
  clock.advance(pendingDelays(clock)[0]);
  Socket.last.open();
  for (const f of Socket.last.frames("subscribe")) ack(Socket.last, f, { epoch: "e2", recovered: [] });
  assert.equal(events.length, 2);
  assert.deepEqual(events[1].recovered, []);
  assert.deepEqual(events[1].snapshotted.sort(), ["news/x", "quotes/AAPL", "quotes/MSFT"]);
  assert.equal(events[1].epochChanged, true);
  tw.close();
});

test("resubscribing a pattern with other options: what the old subscription still sends is dropped", async () => {
  const { sock, tw, errors } = await openClient();
  const got = collector();
  const slow = tw.subscribe("quotes/AAPL", got, { delta: true });
  await flush();
  ack(sock, sock.lastFrame("subscribe"));
  sock.deliver({ type: "msg", topic: "quotes/AAPL", seq: 10, snapshot: true, data: { bid: 1, ask: 2 } });

  // The board's rate control: unsubscribe and subscribe again in one go.
  slow.unsubscribe();
  const fast = tw.subscribe("quotes/AAPL", got, { delta: true, maxRate: 1 });
  await flush();
  const frame = sock.lastFrame("subscribe");
  assert.equal(frame.max_rate, 1);
  // Sent by the server before it read the unsubscribe: a delta on seq 10, which the client
  // forgot with the unsubscribe. Not an error: it belongs to the old subscription.
  sock.deliver({ type: "msg", topic: "quotes/AAPL", seq: 11, delta: { bid: 1.5 } });
  sock.deliver({ type: "unsubscribed", topics: ["quotes/AAPL"], id: sock.lastFrame("unsubscribe").id });
  ack(sock, frame);
  await fast.ready;
  sock.deliver({ type: "msg", topic: "quotes/AAPL", seq: 12, snapshot: true, data: { bid: 1.6, ask: 2 } });
  sock.deliver({ type: "msg", topic: "quotes/AAPL", seq: 13, delta: { ask: 2.1 } });
  assert.deepEqual(errors, []);
  assert.equal(tw.state, "open");
  assert.deepEqual(got.got.map((m) => [m.seq, m.data]), [
    [10, { bid: 1, ask: 2 }],
    [12, { bid: 1.6, ask: 2 }],
    [13, { bid: 1.6, ask: 2.1 }],
  ]);
  tw.close();
});

test("a replay start after since is not a gap even if its seq jumps", async () => {
  const { Socket, sock, clock, tw, lags } = await openClient();
  tw.subscribe("quotes/AAPL", () => {});
  await flush();
  ack(sock, sock.lastFrame("subscribe"));
  sock.deliver({ type: "msg", topic: "quotes/AAPL", seq: 5, snapshot: true, data: 1 });
  sock.serverClose(1006);
  clock.advance(pendingDelays(clock)[0]);
  Socket.last.open();
  ack(Socket.last, Socket.last.lastFrame("subscribe"), { recovered: ["quotes/AAPL"] });
  Socket.last.deliver({ type: "msg", topic: "quotes/AAPL", seq: 8, data: 2 });
  Socket.last.deliver({ type: "msg", topic: "quotes/AAPL", seq: 10, data: 3 });
  assert.deepEqual(lags, [{ topic: "quotes/AAPL", from: 8, to: 10 }]);
  tw.close();
});

test("a new epoch forgets seqs and delta bases", async () => {
  const { Socket, sock, clock, tw, errors } = await openClient();
  const got = collector();
  tw.subscribe("quotes/AAPL", got, { delta: true });
  await flush();
  ack(sock, sock.lastFrame("subscribe"), { epoch: "old" });
  sock.deliver({ type: "msg", topic: "quotes/AAPL", seq: 10, snapshot: true, data: { bid: 1, x: 1 } });
  sock.serverClose(1001);
  clock.advance(pendingDelays(clock)[0]);
  const next = Socket.last;
  next.open();
  const frame = next.lastFrame("subscribe");
  assert.equal(frame.epoch, "old");
  ack(next, frame, { epoch: "new", recovered: [] });
  assert.equal(tw.epoch, "new");
  // seq 11 would follow the old seq 10, but it is another epoch's seq 11: no base.
  next.deliver({ type: "msg", topic: "quotes/AAPL", seq: 11, delta: { bid: 2 } });
  assert.equal(errors.at(-1).code, "delta_base_missing");
  assert.equal(got.got.length, 1);

  clock.advance(pendingDelays(clock)[0]);
  const third = Socket.last;
  third.open();
  const f3 = third.lastFrame("subscribe");
  assert.equal(f3.since, undefined, "no seq is known in the new epoch");
  ack(third, f3, { epoch: "new" });
  third.deliver({ type: "msg", topic: "quotes/AAPL", seq: 3, snapshot: true, data: { bid: 5 } });
  third.deliver({ type: "msg", topic: "quotes/AAPL", seq: 4, delta: { ask: 6 } });
  assert.deepEqual(got.got.map((m) => [m.seq, m.data]), [[10, { bid: 1, x: 1 }], [3, { bid: 5 }], [4, { bid: 5, ask: 6 }]]);
  tw.close();
});

test("subscriptions made while disconnected wait for the connection and the cache fills them", async () => {
  const { Socket, sock, clock, tw } = await openClient();
  tw.subscribe("quotes/AAPL", () => {});
  await flush();
  ack(sock, sock.lastFrame("subscribe"));
  sock.deliver({ type: "msg", topic: "quotes/AAPL", seq: 3, snapshot: true, data: 1 });
  sock.serverClose(1006);
  const late = collector();
  const sub = tw.subscribe("quotes/+", late);
  await flush();
  assert.equal(sock.frames("subscribe").length, 1, "nothing sent to a closed socket");
  clock.advance(pendingDelays(clock)[0]);
  Socket.last.open();
  const frame = Socket.last.lastFrame("subscribe");
  assert.deepEqual(frame.topics, ["quotes/AAPL", "quotes/+"]);
  ack(Socket.last, frame, { recovered: ["quotes/AAPL"] });
  await sub.ready;
  Socket.last.deliver({ type: "msg", topic: "quotes/AAPL", seq: 4, data: 2 });
  assert.deepEqual(late.got.map((m) => [m.seq, m.snapshot]), [[3, true], [4, false]]);
  tw.close();
});

test("close() rejects ready promises still waiting", async () => {
  const { tw } = await openClient();
  const sub = tw.subscribe("quotes/AAPL", () => {});
  tw.close();
  await assert.rejects(sub.ready, { code: "closed" });
  assert.equal(sub.active, false);
});
