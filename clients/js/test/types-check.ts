// Compiled by `npm run typecheck` (tsc --noEmit), never run: it uses the whole API as an
// application would, so the declarations in tickwire.d.ts are checked against real use.
import {
  connect,
  matchTopic,
  applyMergePatch,
  TickwireClient,
  type ClientState,
  type ConnectOptions,
  type LagEvent,
  type RecoveredEvent,
  type Message,
  type Subscription,
  type TickwireError,
  type Timers,
  type WebSocketConstructor,
} from "tickwire-client";

interface Quote { bid: number; ask: number }

const timers: Partial<Timers> = { now: () => Date.now(), random: () => 0.5 };
const options: ConnectOptions = {
  getToken: async () => "jwt",
  protocols: ["tickwire.v1"],
  minDelay: 250,
  maxDelay: 10_000,
  stableAfter: 5_000,
  connectTimeout: 5_000,
  pingInterval: 15_000,
  pongTimeout: 5_000,
  refreshBefore: 60_000,
  maxBufferedAmount: 1 << 16,
  maxQueue: 100,
  retryInterval: 50,
  WebSocket, // the browser's constructor fits
  timers,
};

const tw: TickwireClient = connect("ws://localhost:8080/ws", options);
const fixed = connect("ws://localhost:8080/ws", { token: "static" });

const sub: Subscription = tw.subscribe<Quote>("quotes/AAPL", (msg: Message<Quote>) => {
  const spread: number = msg.data.ask - msg.data.bid;
  const label: string = `${msg.topic}#${msg.seq}${msg.snapshot ? " (snapshot)" : ""}: ${spread}`;
  console.log(label);
}, { maxRate: 4, delta: true });
const anyData = tw.subscribe("quotes/+", (msg) => console.log(msg.data));

sub.ready.then(() => console.log("subscribed to", sub.pattern, sub.active)).catch((err: TickwireError) => {
  console.error(err.code, err.message, err.topics);
});
anyData.unsubscribe();

const onState = (s: ClientState) => console.log(s);
tw.on("state", onState).on("error", (err) => {
  const code: string = err.code;
  const closeCode: number | undefined = err.closeCode;
  console.warn(code, closeCode, err.reason, err.id);
}).on("lag", (lag: LagEvent) => console.log(lag.topic, lag.from, lag.to))
  .on("recovered", (r: RecoveredEvent) => {
    const replayed: string[] = r.recovered;
    const resnapshotted: string[] = r.snapshotted;
    const restarted: boolean = r.epochChanged;
    console.log(replayed.length, resnapshotted.length, restarted);
  });
tw.off("state", onState);

const state: ClientState = tw.state;
const epoch: string | null = tw.epoch;
const yes: boolean = matchTopic("quotes/#", "quotes");
const patched: unknown = applyMergePatch({ bid: 1 }, { bid: null });
console.log(state, epoch, yes, patched);

// A constructor of the shape the `ws` package has is accepted.
declare const NodeWs: WebSocketConstructor;
connect("ws://localhost:8080/ws", { WebSocket: NodeWs }).close();

// @ts-expect-error: unknown events are rejected
tw.on("message", () => {});
// @ts-expect-error: maxRate is a number
tw.subscribe("quotes/AAPL", () => {}, { maxRate: "4" });

tw.close();
fixed.close();
