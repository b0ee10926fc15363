/**
 * tickwire client: one ES module, no dependencies, for browsers and Node 18+.
 *
 * It owns one WebSocket to a tickwire broker at a time and everything that keeps that connection
 * useful to an application: the subscription table (several local subscriptions to one pattern
 * share one server subscription), routing each message to every local subscription whose MQTT
 * pattern matches, the per-topic last seq and data (deltas are applied here, so callbacks always
 * get complete data), reconnection with jittered backoff and recovery through `since`/`epoch`,
 * dead-connection detection with `ping`, token refresh, and an outgoing queue that holds requests
 * while the socket is not open or its bufferedAmount is high. After a reconnect it reports what the
 * server could replay and what came back as a snapshot (the `recovered` event).
 *
 * The server side of the protocol is described in the repository README and clients/js/README.md.
 */

const OPEN = 1; // WebSocket.OPEN, spelled out so injected constructors need not define it

const DEFAULTS = {
  protocols: ["tickwire.v1"],
  minDelay: 500, // backoff: first retry within [0, minDelay)
  maxDelay: 30_000, // backoff cap
  stableAfter: 10_000, // a connection open this long resets the backoff
  connectTimeout: 10_000,
  pingInterval: 15_000, // 0 turns pings off
  pongTimeout: 10_000,
  refreshBefore: 30_000, // getToken() this long before the token's exp
  maxBufferedAmount: 64 * 1024, // hold requests while the socket has more than this unsent
  maxQueue: 1000, // requests held at most; past it they are dropped with an `error` event
  retryInterval: 100, // how often held requests are retried
};

// The server refuses client frames over --max-client-message (64 KiB by default); a `since` map
// for a wide wildcard could exceed that, so it is cut at this size and the rest get snapshots.
const SINCE_BUDGET = 48 * 1024;
const RATE_LIMIT_RETRY = 1000; // the server's request limit is per second
const MAX_TIMER_DELAY = 2 ** 31 - 1;

/**
 * Connect to a tickwire broker. The connection starts on the next microtask, so listeners
 * attached right after this call see the first `connecting` state.
 * @param {string} url e.g. "ws://localhost:8080/ws"
 * @param {object} [options] see tickwire.d.ts (ConnectOptions)
 * @returns {TickwireClient}
 */
export function connect(url, options = {}) {
  return new TickwireClient(url, options);
}

/**
 * MQTT topic matching: `+` is one level, `#` as the last level any number of levels, including
 * none (`quotes/#` matches `quotes`).
 * @param {string} pattern
 * @param {string} topic
 * @returns {boolean}
 */
export function matchTopic(pattern, topic) {
  return matchLevels(pattern.split("/"), topic.split("/"));
}

function matchLevels(p, t) {
  for (let i = 0; i < p.length; i++) {
    if (p[i] === "#") return i === p.length - 1;
    if (i >= t.length || (p[i] !== "+" && p[i] !== t[i])) return false;
  }
  return p.length === t.length;
}

/**
 * RFC 7396 JSON merge patch. Returns a new value and leaves `target` untouched, because the
 * previous data was handed to callbacks that may still hold it.
 * @param {unknown} target
 * @param {unknown} patch
 * @returns {unknown}
 */
export function applyMergePatch(target, patch) {
  if (!isPlainObject(patch)) return patch;
  const out = isPlainObject(target) ? { ...target } : {};
  for (const key of Object.keys(patch)) {
    if (patch[key] === null) delete out[key];
    // defineProperty, so a "__proto__" key in the data stays a key and never a prototype
    else {
      const value = applyMergePatch(out[key], patch[key]);
      Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
    }
  }
  return out;
}

function isPlainObject(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/** The `exp` claim of a JWT (seconds), read without verifying; null if there is none. */
function jwtExp(token) {
  try {
    const b64 = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    // atob yields one char per byte; non-ASCII claims come out garbled but still parse, and exp is a number.
    const exp = JSON.parse(atob(b64.padEnd(Math.ceil(b64.length / 4) * 4, "="))).exp;
    return typeof exp === "number" ? exp : null;
  } catch {
    return null;
  }
}

function tickwireError(code, message, extra) {
  return Object.assign(new Error(message || code), { code }, extra);
}

// Exceptions from application callbacks must not break the client's state; like an event
// listener's, they are rethrown where the host reports uncaught errors.
function rethrowLater(err) {
  queueMicrotask(() => { throw err; });
}

class Subscription {
  constructor(client, pattern, callback) {
    this.pattern = pattern;
    this.active = true;
    this._client = client;
    this._callback = callback;
    this._settled = false;
    this.ready = new Promise((resolve, reject) => { this._resolve = resolve; this._reject = reject; });
    // Nobody has to await `ready`; a rejection nobody looks at must not crash Node.
    this.ready.catch(() => {});
  }

  /** Stop this subscription; the server subscription goes when its last local one does. */
  unsubscribe() {
    this._client._unsubscribe(this);
  }

  _end(err) {
    this.active = false;
    if (!this._settled) { this._settled = true; this._reject(err); }
  }
}

export class TickwireClient {
  /**
   * Use connect(); the constructor is exported for `instanceof` and typing.
   * @param {string} url
   * @param {object} [options]
   */
  constructor(url, options = {}) {
    const Ctor = options.WebSocket || globalThis.WebSocket;
    if (typeof Ctor !== "function") {
      throw new TypeError("tickwire: no WebSocket here; pass one as options.WebSocket (e.g. from the 'ws' package)");
    }
    this._url = url;
    this._Ctor = Ctor;
    this._o = { ...options };
    for (const [key, value] of Object.entries(DEFAULTS)) this._o[key] = options[key] ?? value;
    const t = options.timers || {};
    // Wrapped, because a browser's setTimeout throws when called as a method of another object.
    this._timers = {
      setTimeout: t.setTimeout ? (fn, ms) => t.setTimeout(fn, ms) : (fn, ms) => setTimeout(fn, ms),
      clearTimeout: t.clearTimeout ? (h) => t.clearTimeout(h) : (h) => clearTimeout(h),
      now: t.now ? () => t.now() : () => Date.now(),
      random: t.random ? () => t.random() : Math.random,
    };
    this._listeners = { state: new Set(), error: new Set(), lag: new Set(), recovered: new Set() };
    this._state = "connecting";
    this._entries = new Map(); // pattern -> {pattern, levels, opts, subs, acked, requestId}
    this._topics = new Map(); // concrete topic -> {seq, data, fresh}
    this._epoch = null;
    this._ws = null;
    this._token = options.token;
    this._queue = []; // serialized frames waiting for an open, unclogged socket
    this._requests = new Map(); // id -> what was asked, for matching replies
    this._lastId = 0;
    this._attempt = 0;
    this._openedAt = null;
    this._gen = 0; // bumped by every connect and by close(), to drop stale async results
    this._timer = {}; // named timer handles: reconnect, connect, ping, pong, flush, refresh, retry
    this._heard = false;
    this._refreshing = false;
    this._syncQueued = false;
    this._recovery = null; // after a reconnect, what the resubscriptions got back so far
    queueMicrotask(() => {
      if (this._state === "closed") return;
      this._emit("state", "connecting");
      this._connect();
    });
  }

  /** @returns {"connecting"|"open"|"reconnecting"|"closed"} */
  get state() { return this._state; }

  /** The server epoch of the last `subscribed` ack, or null before the first one. */
  get epoch() { return this._epoch; }

  /**
   * Subscribe to a topic or an MQTT pattern. Several subscriptions to the same pattern share one
   * server subscription, which keeps the options of the first.
   * @param {string} pattern e.g. "quotes/AAPL", "quotes/+", "quotes/#"
   * @param {(msg: {topic: string, seq: number, data: unknown, snapshot: boolean}) => void} callback
   * @param {{maxRate?: number, delta?: boolean}} [options]
   * @returns {Subscription}
   */
  subscribe(pattern, callback, options = {}) {
    if (typeof pattern !== "string" || pattern === "") throw new TypeError("tickwire: pattern must be a non-empty string");
    if (typeof callback !== "function") throw new TypeError("tickwire: callback must be a function");
    const sub = new Subscription(this, pattern, callback);
    if (this._state === "closed") {
      sub._end(tickwireError("closed", "client is closed"));
      return sub;
    }
    let entry = this._entries.get(pattern);
    if (!entry) {
      const opts = { maxRate: options.maxRate ?? null, delta: Boolean(options.delta) };
      entry = { pattern, levels: pattern.split("/"), opts, subs: new Set(), acked: false, requestId: 0 };
      this._entries.set(pattern, entry);
      this._scheduleSync();
    }
    entry.subs.add(sub);
    // Already live: ready on the next microtask, never inside this call.
    if (entry.acked) queueMicrotask(() => this._settle(sub));
    return sub;
  }

  /**
   * @param {"state"|"error"|"lag"|"recovered"} event
   * @param {Function} fn
   * @returns {this}
   */
  on(event, fn) {
    this._listenersOf(event).add(fn);
    return this;
  }

  /** Remove a listener added with on(). @returns {this} */
  off(event, fn) {
    this._listenersOf(event).delete(fn);
    return this;
  }

  /** Close for good: no reconnects; pending `ready` promises reject with code `closed`. */
  close() {
    if (this._state === "closed") return;
    this._gen++;
    this._teardown();
    this._clear("reconnect");
    const err = tickwireError("closed", "client is closed");
    for (const entry of this._entries.values()) for (const sub of entry.subs) sub._end(err);
    this._entries.clear();
    this._topics.clear();
    this._setState("closed");
  }

  // ---- connection lifecycle ----

  async _connect() {
    const gen = ++this._gen;
    if (this._o.getToken) {
      let token;
      try {
        token = await this._o.getToken();
      } catch (err) {
        if (gen !== this._gen) return;
        this._emit("error", tickwireError("token_error", `getToken failed: ${err?.message ?? err}`, { cause: err }));
        this._drop();
        return;
      }
      if (gen !== this._gen) return; // closed while the token was coming
      this._token = token;
    }
    let ws;
    try {
      ws = new this._Ctor(this._urlWithToken(), this._o.protocols);
    } catch (err) {
      // A URL the constructor refuses will never work; retrying would only spin.
      this._emit("error", tickwireError("bad_url", String(err?.message ?? err), { cause: err }));
      this.close();
      return;
    }
    this._ws = ws;
    ws.onopen = () => this._onOpen();
    ws.onmessage = (ev) => this._onFrame(ev);
    ws.onclose = (ev) => {
      const why = `connection closed (${ev.code}${ev.reason ? ` ${ev.reason}` : ""})`;
      this._emit("error", tickwireError("disconnected", why, { closeCode: ev.code, reason: ev.reason }));
      this._drop();
    };
    ws.onerror = () => {}; // a close event follows and carries what is known
    this._arm("connect", this._o.connectTimeout, () => {
      this._emit("error", tickwireError("connect_timeout", "connection not open in time"));
      this._drop();
    });
  }

  _urlWithToken() {
    if (!this._token) return this._url;
    return `${this._url}${this._url.includes("?") ? "&" : "?"}token=${encodeURIComponent(this._token)}`;
  }

  _onOpen() {
    this._clear("connect");
    this._openedAt = this._timers.now();
    this._setState("open");
    // With data from an earlier connection, the resubscriptions below carry `since`: collect what
    // their acks say came back, for one `recovered` event once every pattern is answered.
    this._recovery = this._topics.size ? { pending: new Set(), recovered: [], snapshotted: [], epochChanged: false } : null;
    this._sync();
    this._finishRecovery();
    if (this._o.pingInterval > 0) this._arm("ping", this._o.pingInterval, () => this._ping());
    this._scheduleRefresh(jwtExp(this._token));
  }

  /** The connection is gone or useless: clean up and schedule the next attempt. */
  _drop() {
    this._teardown();
    if (this._state === "closed") return;
    if (this._openedAt !== null && this._timers.now() - this._openedAt >= this._o.stableAfter) this._attempt = 0;
    this._openedAt = null;
    this._setState("reconnecting");
    // Full jitter: random(0, min(maxDelay, minDelay * 2^attempt)) spreads a crowd of clients
    // reconnecting after a server restart over the whole window.
    const cap = Math.min(this._o.maxDelay, this._o.minDelay * 2 ** Math.min(this._attempt, 30));
    this._attempt++;
    this._arm("reconnect", this._timers.random() * cap, () => this._connect());
  }

  _teardown() {
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      // Not null: the 'ws' package throws an error event that has no listener.
      ws.onerror = () => {};
      if (ws.readyState <= OPEN) {
        try { ws.close(1000); } catch { /* already failing; nothing more to do */ }
      }
    }
    for (const name of ["connect", "ping", "pong", "flush", "refresh", "retry"]) this._clear(name);
    // Frames and replies belong to the connection; subscriptions are resent from the table.
    this._queue = [];
    this._requests.clear();
    this._recovery = null; // a connection lost while recovering: the next one starts over
    for (const entry of this._entries.values()) { entry.acked = false; entry.requestId = 0; }
    for (const st of this._topics.values()) st.fresh = false;
  }

  _ping() {
    this._arm("ping", this._o.pingInterval, () => this._ping());
    if (this._timer.pong) return; // the previous ping is still waiting
    this._heard = false;
    this._request({ op: "ping" }, { op: "ping" });
    // Any frame counts as a sign of life, not only the pong: a busy stream may delay the pong.
    this._arm("pong", this._o.pongTimeout, () => {
      if (this._heard) return;
      this._emit("error", tickwireError("ping_timeout", "no answer to ping"));
      this._drop();
    });
  }

  // ---- subscriptions ----

  _scheduleSync() {
    // Subscriptions made in the same tick go out as one request.
    if (this._syncQueued) return;
    this._syncQueued = true;
    queueMicrotask(() => { this._syncQueued = false; this._sync(); });
  }

  /** Subscribe every pattern not yet (being) subscribed on this connection, one request per option set. */
  _sync() {
    if (!this._isOpen()) return; // _onOpen syncs everything
    const groups = new Map();
    for (const entry of this._entries.values()) {
      if (entry.acked || entry.requestId) continue;
      const key = `${entry.opts.maxRate}|${entry.opts.delta}`;
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(entry);
    }
    for (const list of groups.values()) this._sendSubscribe(list);
  }

  _sendSubscribe(list) {
    const { maxRate, delta } = list[0].opts;
    const patterns = list.map((e) => e.pattern);
    const frame = { op: "subscribe", topics: patterns };
    if (maxRate !== null) frame.max_rate = maxRate;
    if (delta) frame.delta = true;
    const since = this._epoch === null ? null : this._since(list);
    if (since) { frame.since = since; frame.epoch = this._epoch; }
    // The topics whose data this request may bring back by replay, for the `recovered` event
    // (those cut from `since` are among them: they come back as snapshots).
    const asked = this._recovery ? this._known(list) : [];
    const id = this._request(frame, { op: "subscribe", patterns, asked });
    if (id && this._recovery) this._recovery.pending.add(id);
    for (const entry of list) {
      if (id) entry.requestId = id;
      else this._fail(entry, tickwireError("queue_overflow", "request queue full", { topics: [entry.pattern] }));
    }
  }

  /** Last seq per known topic that the patterns match, so the server can replay what was missed. */
  _since(list) {
    const since = Object.create(null); // a topic named "__proto__" stays a key
    let budget = SINCE_BUDGET;
    let any = false;
    for (const topic of this._known(list)) {
      budget -= topic.length + 24;
      if (budget < 0) break; // the rest get snapshots instead of replays
      since[topic] = this._topics.get(topic).seq;
      any = true;
    }
    return any ? since : null;
  }

  /** The topics with known data that any of the entries' patterns match. */
  _known(list) {
    const topics = [];
    for (const topic of this._topics.keys()) {
      const levels = topic.split("/");
      if (list.some((e) => matchLevels(e.levels, levels))) topics.push(topic);
    }
    return topics;
  }

  _settle(sub) {
    if (!sub.active || sub._settled) return;
    sub._settled = true;
    sub._resolve();
    // A pattern new to this subscription may match topics the client already follows through
    // another one; the server does not resend those, so the cache gives it their current data.
    for (const [topic, st] of this._topics) {
      if (!matchTopic(sub.pattern, topic)) continue;
      this._call(sub, { topic, seq: st.seq, data: st.data, snapshot: true });
    }
  }

  _unsubscribe(sub) {
    if (!sub.active) return;
    sub._end(tickwireError("unsubscribed", "unsubscribed before the server answered"));
    const entry = this._entries.get(sub.pattern);
    if (!entry || !entry.subs.delete(sub) || entry.subs.size) return;
    this._entries.delete(entry.pattern);
    if (entry.acked || entry.requestId) this._request({ op: "unsubscribe", topics: [entry.pattern] }, { op: "unsubscribe" });
    this._forgetUncovered();
  }

  /** The server refused or revoked a pattern: its subscriptions end. */
  _fail(entry, err) {
    if (this._entries.get(entry.pattern) !== entry) return;
    this._entries.delete(entry.pattern);
    for (const sub of entry.subs) sub._end(err);
    this._forgetUncovered();
  }

  _forgetUncovered() {
    // Per-topic state only for topics still subscribed, or a wide wildcard would grow it forever.
    for (const topic of this._topics.keys()) {
      const levels = topic.split("/");
      let covered = false;
      for (const entry of this._entries.values()) if ((covered = matchLevels(entry.levels, levels))) break;
      if (!covered) this._topics.delete(topic);
    }
  }

  // ---- incoming frames ----

  _onFrame(ev) {
    this._heard = true;
    let m;
    try {
      m = JSON.parse(typeof ev.data === "string" ? ev.data : String(ev.data));
    } catch {
      this._emit("error", tickwireError("bad_frame", "server sent a frame that is not JSON"));
      return;
    }
    if (m === null || typeof m !== "object") return;
    const req = m.id !== undefined && m.type !== "msg" ? this._requests.get(m.id) : undefined;
    if (req) this._requests.delete(m.id);
    switch (m.type) {
      case "msg": return this._onMsg(m);
      case "subscribed": return this._onSubscribed(m, req);
      case "unsubscribed": return this._onUnsubscribed(m);
      case "error": return this._onServerError(m, req);
    }
    // The auth reply's type is not fixed: any non-error answer to an auth request is success.
    if (req?.op === "auth") {
      this._scheduleRefresh(typeof m.exp === "number" ? m.exp : jwtExp(req.token));
      this._sync(); // patterns refused with token_expired go again
    }
  }

  _onMsg(m) {
    const { topic, seq } = m;
    if (typeof topic !== "string" || typeof seq !== "number") return;
    const levels = topic.split("/");
    const targets = [];
    for (const entry of this._entries.values()) if (entry.acked && matchLevels(entry.levels, levels)) targets.push(entry);
    // The server acks a subscribe before sending anything for it, so a message that no
    // acknowledged pattern matches was sent for a pattern unsubscribed since (maybe being
    // subscribed again, with other options): drop it, even a delta whose base was forgotten.
    if (!targets.length) return;
    const st = this._topics.get(topic);
    const snapshot = m.snapshot === true;
    // A replay may overlap frames that were already on the way: keep seqs increasing.
    if (!snapshot && st && seq <= st.seq) return;
    let data = m.data;
    if (!("data" in m) && "delta" in m) {
      if (!st || st.seq !== seq - 1) {
        // The server only sends deltas on top of seq-1; without it the data cannot be rebuilt.
        // Reconnecting resubscribes with `since`, and a replay always starts with full data.
        this._emit("error", tickwireError("delta_base_missing", `delta for ${topic} seq ${seq} without seq ${seq - 1}`));
        this._drop();
        return;
      }
      data = applyMergePatch(st.data, m.delta);
    }
    if (!snapshot && st && !st.fresh && seq > st.seq + 1) this._emit("lag", { topic, from: st.seq, to: seq });
    this._topics.set(topic, { seq, data, fresh: false });
    const msg = { topic, seq, data, snapshot };
    for (const entry of targets) {
      // Not-yet-ready subscriptions get the topic from the cache when they become ready.
      for (const sub of entry.subs) if (sub._settled) this._call(sub, msg);
    }
  }

  _onSubscribed(m, req) {
    const recovered = Array.isArray(m.recovered) ? m.recovered : [];
    if (typeof m.epoch === "string") {
      // A new epoch means the server's seqs started over: old seqs and delta bases mean nothing.
      if (this._epoch !== null && m.epoch !== this._epoch) {
        this._topics.clear();
        if (this._recovery) this._recovery.epochChanged = true;
      }
      this._epoch = m.epoch;
    }
    // The first replayed message follows the seq in `since`; do not take it for a gap.
    for (const topic of recovered) {
      const st = this._topics.get(topic);
      if (st) st.fresh = true;
    }
    if (req?.op !== "subscribe") return;
    if (this._recovery?.pending.delete(m.id)) {
      const got = new Set(recovered);
      for (const topic of req.asked) (got.has(topic) ? this._recovery.recovered : this._recovery.snapshotted).push(topic);
    }
    for (const pattern of req.patterns) {
      const entry = this._entries.get(pattern);
      if (!entry || entry.requestId !== m.id) continue; // unsubscribed meanwhile
      entry.acked = true;
      entry.requestId = 0;
      for (const sub of entry.subs) this._settle(sub);
    }
    this._finishRecovery();
  }

  /** Once every resubscription after a reconnect is answered, tell what came back. */
  _finishRecovery() {
    const r = this._recovery;
    if (!r || r.pending.size) return;
    // Patterns waiting to be sent again (rate_limited, token_expired) are part of it too.
    for (const entry of this._entries.values()) if (!entry.acked && !entry.requestId) return;
    this._recovery = null;
    if (!r.recovered.length && !r.snapshotted.length) return;
    this._emit("recovered", { recovered: r.recovered, snapshotted: r.snapshotted, epochChanged: r.epochChanged });
  }

  _onUnsubscribed(m) {
    // With an id it answers our unsubscribe. Without one the server dropped patterns itself
    // (a token refresh narrowed the entitlements).
    if (m.id !== undefined && m.reason === undefined) return;
    const code = m.reason || "unsubscribed";
    const topics = Array.isArray(m.topics) ? m.topics : [];
    const err = tickwireError(code, `server ended the subscription (${code}): ${topics.join(", ")}`, { topics });
    this._emit("error", err);
    for (const pattern of topics) {
      const entry = this._entries.get(pattern);
      if (entry) this._fail(entry, err);
    }
  }

  _onServerError(m, req) {
    const code = typeof m.code === "string" ? m.code : "error";
    const err = tickwireError(code, m.message, { id: m.id });
    if (req?.op === "subscribe") return this._subscribeFailed(m.id, req, err);
    this._emit("error", err);
    // A failed auth is not retried here; the server's 1008 close and the reconnect fetch a new token.
    if (code === "token_expired" && req?.op !== "auth") this._refreshToken();
  }

  _subscribeFailed(id, req, err) {
    this._recovery?.pending.delete(id);
    this._refused(id, req, err);
    this._finishRecovery(); // after the retries are sent or scheduled, so that they are waited for
  }

  _refused(id, req, err) {
    const entries = req.patterns.map((p) => this._entries.get(p)).filter((e) => e && e.requestId === id);
    err.topics = entries.map((e) => e.pattern);
    const afterToken = err.code === "token_expired" && this._o.getToken;
    if (afterToken || err.code === "rate_limited") {
      for (const entry of entries) entry.requestId = 0; // sent again by the next _sync()
      this._emit("error", err);
      if (afterToken) this._refreshToken();
      else this._arm("retry", RATE_LIMIT_RETRY, () => this._sync());
      return;
    }
    if (entries.length > 1) {
      // A subscribe is all or nothing; one pattern at a time tells which one the server refuses.
      for (const entry of entries) entry.requestId = 0;
      for (const entry of entries) this._sendSubscribe([entry]);
      return;
    }
    this._emit("error", err);
    for (const entry of entries) this._fail(entry, err);
  }

  // ---- tokens ----

  _scheduleRefresh(exp) {
    this._clear("refresh");
    if (!this._o.getToken || exp === null) return;
    const left = exp * 1000 - this._timers.now();
    if (left <= 0) return; // already expired: the server's close and the reconnect deal with it
    // At least half the remaining life, so a token shorter-lived than refreshBefore cannot make
    // getToken() spin.
    this._arm("refresh", Math.max(left - this._o.refreshBefore, left / 2), () => this._refreshToken());
  }

  async _refreshToken() {
    const ws = this._ws;
    if (!this._o.getToken || !ws || this._refreshing) return;
    this._refreshing = true;
    let token;
    try {
      token = await this._o.getToken();
    } catch (err) {
      this._emit("error", tickwireError("token_error", `getToken failed: ${err?.message ?? err}`, { cause: err }));
      return;
    } finally {
      this._refreshing = false;
    }
    if (this._ws !== ws || !this._isOpen()) return; // the next connection gets its own token
    this._token = token;
    this._request({ op: "auth", token }, { op: "auth", token });
  }

  // ---- outgoing queue ----

  /** Queue a request with a fresh id; returns the id, or 0 when the queue is full. */
  _request(frame, meta) {
    const id = ++this._lastId;
    frame.id = id;
    if (this._queue.length >= this._o.maxQueue) {
      this._emit("error", tickwireError("queue_overflow", `request queue full (${this._o.maxQueue}); ${frame.op} dropped`));
      return 0;
    }
    this._queue.push(JSON.stringify(frame));
    this._requests.set(id, meta);
    this._flush();
    return id;
  }

  _flush() {
    const ws = this._ws;
    while (this._queue.length && ws && ws.readyState === OPEN && ws.bufferedAmount <= this._o.maxBufferedAmount) {
      try {
        ws.send(this._queue[0]);
      } catch (err) {
        this._emit("error", tickwireError("send_failed", String(err?.message ?? err), { cause: err }));
        // Not from inside a caller that is still updating the subscription table.
        queueMicrotask(() => { if (this._ws === ws) this._drop(); });
        return;
      }
      this._queue.shift();
    }
    // Held: the socket is not open yet or has too much unsent. Browsers have no drain event.
    if (this._queue.length && ws && !this._timer.flush) {
      this._arm("flush", this._o.retryInterval, () => this._flush());
    }
  }

  _isOpen() {
    return this._ws !== null && this._ws.readyState === OPEN;
  }

  // ---- small helpers ----

  _arm(name, ms, fn) {
    this._clear(name);
    // Timers take a 32-bit delay and fire at once past it: a token valid for a month must not
    // make the refresh run immediately.
    const delay = Math.min(ms, MAX_TIMER_DELAY);
    this._timer[name] = this._timers.setTimeout(() => { this._timer[name] = null; fn(); }, delay);
  }

  _clear(name) {
    if (this._timer[name]) this._timers.clearTimeout(this._timer[name]);
    this._timer[name] = null;
  }

  _setState(state) {
    if (state === this._state) return;
    this._state = state;
    this._emit("state", state);
  }

  _listenersOf(event) {
    const set = this._listeners[event];
    if (!set) throw new TypeError(`tickwire: unknown event "${event}" (state, error, lag, recovered)`);
    return set;
  }

  _emit(event, arg) {
    for (const fn of [...this._listeners[event]]) {
      try { fn(arg); } catch (err) { rethrowLater(err); }
    }
  }

  _call(sub, msg) {
    if (!sub.active) return;
    try { sub._callback(msg); } catch (err) { rethrowLater(err); }
  }
}
