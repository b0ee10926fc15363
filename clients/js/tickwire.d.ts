// Type declarations for tickwire.js, the tickwire broker's JavaScript client.

/** Connection state, reported by the `state` event and `client.state`. */
export type ClientState = "connecting" | "open" | "reconnecting" | "closed";

/** What a subscription callback receives. `data` is always complete: deltas are applied inside. */
export interface Message<T = unknown> {
  topic: string;
  /** Per-topic sequence number, from 1, increasing. */
  seq: number;
  data: T;
  /**
   * True for a snapshot: the current value rather than the next update. Sent by the server on
   * subscribe and after a reconnect that could not replay, or taken from the client's cache when a
   * subscription starts on a topic the client already follows.
   */
  snapshot: boolean;
}

/** A seq gap: updates `from`+1 .. `to`-1 were merged (max_rate) or conflated (slow consumer). */
export interface LagEvent {
  topic: string;
  /** The last seq seen before the gap. */
  from: number;
  /** The seq that arrived. */
  to: number;
}

/**
 * After a reconnect, what the resubscriptions brought back of the topics the client had data for;
 * emitted once, when every pattern has been answered (nothing when there was no data to recover).
 */
export interface RecoveredEvent {
  /** Topics whose missed messages the server replayed, in order: nothing was lost. */
  recovered: string[];
  /**
   * Topics that came back as a snapshot instead (the server's history did not reach back far
   * enough, the epoch changed, or the topic was cut from a very wide `since`): updates in between
   * were skipped, the data is current.
   */
  snapshotted: string[];
  /** The server's epoch changed (a restart without shared history): seqs started over. */
  epochChanged: boolean;
}

/**
 * Every error has a `code`: the server's (`forbidden`, `invalid_topic`, `token_expired`, ...)
 * or the client's own (`disconnected`, `ping_timeout`, `connect_timeout`, `queue_overflow`,
 * `delta_base_missing`, `token_error`, `bad_frame`, `send_failed`, `bad_url`, `closed`,
 * `unsubscribed`).
 */
export interface TickwireError extends Error {
  code: string;
  /** The id of the request the server answered, when there is one. */
  id?: unknown;
  /** The patterns a subscribe error or a server-side unsubscribe concerns. */
  topics?: string[];
  /** For `disconnected`: the WebSocket close code and reason. */
  closeCode?: number;
  reason?: string;
}

/** Injectable clock, for deterministic tests. Any member left out uses the real one. */
export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: any): void;
  /** Milliseconds since the Unix epoch (compared with a token's exp). */
  now(): number;
  /** A number in [0, 1), for backoff jitter. */
  random(): number;
}

/** The part of the WebSocket API the client uses; the browser's, Node 22's and the `ws` package's fit. */
export interface WebSocketLike {
  readonly readyState: number;
  readonly bufferedAmount: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  // The client sets these to handlers taking ({data}) and ({code, reason}); typed loosely so that
  // constructors with richer event types are accepted.
  onopen: ((ev: any) => any) | null;
  onmessage: ((ev: any) => any) | null;
  onclose: ((ev: any) => any) | null;
  onerror: ((ev: any) => any) | null;
}

export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

export interface ConnectOptions {
  /** A fixed token, sent as `?token=` on the URL. Use getToken for tokens that expire. */
  token?: string;
  /**
   * Called before every connection attempt (the token goes on the URL), again shortly before the
   * token's `exp` and on a `token_expired` error (the new token is sent with the `auth` op on the
   * open connection).
   */
  getToken?: () => string | Promise<string>;
  /** WebSocket subprotocols to offer. Default `["tickwire.v1"]`. */
  protocols?: string[];
  /** Backoff: the first retry waits random(0, minDelay) ms. Default 500. */
  minDelay?: number;
  /** Backoff cap in ms: random(0, min(maxDelay, minDelay * 2^attempt)). Default 30000. */
  maxDelay?: number;
  /** A connection open this long (ms) resets the backoff. Default 10000. */
  stableAfter?: number;
  /** Give up on a connection attempt not open after this long (ms). Default 10000. */
  connectTimeout?: number;
  /** Send a `ping` this often (ms); 0 turns pings off. Default 15000. */
  pingInterval?: number;
  /** No pong and no other frame within this long after a ping (ms): reconnect. Default 10000. */
  pongTimeout?: number;
  /** Call getToken this long (ms) before the token's exp, or at half its remaining life if sooner. Default 30000. */
  refreshBefore?: number;
  /** Hold requests while the socket's bufferedAmount is above this (bytes). Default 65536. */
  maxBufferedAmount?: number;
  /** Requests held at most; past it they are dropped with an `error` event. Default 1000. */
  maxQueue?: number;
  /** How often held requests are retried (ms). Default 100. */
  retryInterval?: number;
  /** WebSocket constructor; default `globalThis.WebSocket` (Node 20 has none: pass the `ws` package's). */
  WebSocket?: WebSocketConstructor;
  timers?: Partial<Timers>;
}

export interface SubscribeOptions {
  /** At most this many updates per topic per second; the latest value always arrives. */
  maxRate?: number;
  /** Let the server send merge-patch deltas; the callback still gets complete data. */
  delta?: boolean;
}

export interface Subscription {
  readonly pattern: string;
  /** False after unsubscribe(), a refusal, a server-side unsubscribe or close(). */
  readonly active: boolean;
  /**
   * Resolves when the server acknowledged the subscription; rejects with a TickwireError carrying
   * the server's code and message (e.g. `forbidden`, `invalid_topic`).
   */
  readonly ready: Promise<void>;
  /** Stop the callback; the server subscription ends with the last subscription to its pattern. */
  unsubscribe(): void;
}

export declare class TickwireClient {
  /** Use connect(). */
  constructor(url: string, options?: ConnectOptions);
  readonly state: ClientState;
  /** The epoch of the last `subscribed` ack, or null before the first. */
  readonly epoch: string | null;
  /**
   * Subscribe to a topic or MQTT pattern (`+` one level, `#` last level = any number).
   * Subscriptions to the same pattern share one server subscription with the first one's options.
   */
  subscribe<T = any>(pattern: string, callback: (msg: Message<T>) => void, options?: SubscribeOptions): Subscription;
  on(event: "state", fn: (state: ClientState) => void): this;
  on(event: "error", fn: (err: TickwireError) => void): this;
  on(event: "lag", fn: (lag: LagEvent) => void): this;
  /** After a reconnect: which topics were replayed and which came back as snapshots. */
  on(event: "recovered", fn: (r: RecoveredEvent) => void): this;
  off(event: "state", fn: (state: ClientState) => void): this;
  off(event: "error", fn: (err: TickwireError) => void): this;
  off(event: "lag", fn: (lag: LagEvent) => void): this;
  off(event: "recovered", fn: (r: RecoveredEvent) => void): this;
  /** Close for good: no more reconnects; pending `ready` promises reject with code `closed`. */
  close(): void;
}

/** Connect to a tickwire broker, e.g. `connect("ws://localhost:8080/ws")`. */
export declare function connect(url: string, options?: ConnectOptions): TickwireClient;

/** MQTT topic matching as the broker does it (`quotes/#` also matches `quotes`). */
export declare function matchTopic(pattern: string, topic: string): boolean;

/** RFC 7396 JSON merge patch; returns a new value and leaves `target` untouched. */
export declare function applyMergePatch(target: unknown, patch: unknown): unknown;
