// Test doubles for the client: a WebSocket that records what is sent and lets a test play the
// server (open, deliver, close), and a clock whose timers run only when the test advances it.

/**
 * A fresh FakeSocket class per test, so instance lists never leak between tests.
 * Use as `connect(url, { WebSocket: Socket })`; `Socket.instances` lists the sockets made.
 */
export function fakeSocketClass() {
  class FakeSocket {
    static instances = [];

    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.readyState = 0; // CONNECTING
      this.bufferedAmount = 0;
      this.sent = []; // raw strings passed to send()
      this.closeCalls = []; // {code, reason} of every close() by the client
      this.onopen = this.onmessage = this.onclose = this.onerror = null;
      FakeSocket.instances.push(this);
    }

    static get last() {
      return FakeSocket.instances[FakeSocket.instances.length - 1];
    }

    send(data) {
      if (this.readyState !== 1) throw new Error(`send() in readyState ${this.readyState}`);
      this.sent.push(data);
    }

    close(code, reason) {
      this.closeCalls.push({ code, reason });
      if (this.readyState < 2) this.readyState = 2; // CLOSING; the client has already let go
    }

    // ---- the server's side ----

    open() {
      this.readyState = 1;
      this.onopen?.({ type: "open" });
    }

    /** Deliver one server frame: an object (sent as JSON) or a raw string. */
    deliver(frame) {
      this.onmessage?.({ type: "message", data: typeof frame === "string" ? frame : JSON.stringify(frame) });
    }

    serverClose(code = 1006, reason = "") {
      this.readyState = 3;
      this.onclose?.({ type: "close", code, reason, wasClean: code !== 1006 });
    }

    /** Parsed frames sent by the client, optionally only those with this op. */
    frames(op) {
      const all = this.sent.map((s) => JSON.parse(s));
      return op ? all.filter((f) => f.op === op) : all;
    }

    lastFrame(op) {
      const list = this.frames(op);
      return list[list.length - 1];
    }
  }
  return FakeSocket;
}

/** Deterministic timers: nothing runs until advance(); random() returns `rand` (settable). */
export class FakeClock {
  constructor() {
    this.t = 0;
    this.rand = 0.5;
    this.nextId = 1;
    this.pending = new Map(); // id -> {at, fn, ms}
    this.delays = []; // every delay asked for, in order
  }

  get timers() {
    return {
      setTimeout: (fn, ms) => {
        const id = this.nextId++;
        this.delays.push(ms);
        this.pending.set(id, { at: this.t + ms, fn, ms });
        return id;
      },
      clearTimeout: (id) => { this.pending.delete(id); },
      now: () => this.t,
      random: () => this.rand,
    };
  }

  /** Move time forward, running due timers in order (timers they set run too if due). */
  advance(ms) {
    const end = this.t + ms;
    for (;;) {
      let next = null;
      for (const [id, timer] of this.pending) {
        if (timer.at <= end && (next === null || timer.at < next[1].at)) next = [id, timer];
      }
      if (!next) break;
      this.pending.delete(next[0]);
      this.t = Math.max(this.t, next[1].at);
      next[1].fn();
    }
    this.t = end;
  }
}

/** Let promise callbacks and queued microtasks run (getToken, ready, batching). */
export function flush() {
  return new Promise((resolve) => setImmediate(resolve));
}

/** The delays of the timers now pending, in the order they were set. */
export function pendingDelays(clock) {
  return [...clock.pending.values()].map((t) => t.ms);
}

/**
 * A client wired to a fake socket class and a fake clock, with its events recorded.
 * The connection attempt has started (one socket exists, not yet open).
 */
export async function setup(connect, options = {}) {
  const Socket = fakeSocketClass();
  const clock = new FakeClock();
  const tw = connect(options.url ?? "ws://test/ws", { WebSocket: Socket, timers: clock.timers, ...options });
  const states = [];
  const errors = [];
  const lags = [];
  tw.on("state", (s) => states.push(s));
  tw.on("error", (e) => errors.push(e));
  tw.on("lag", (l) => lags.push(l));
  await flush();
  return { Socket, clock, tw, states, errors, lags };
}

/** Answer a subscribe frame with an ack. */
export function ack(sock, frame, extra = {}) {
  sock.deliver({ type: "subscribed", topics: frame.topics, epoch: "e1", id: frame.id, ...extra });
}
