// Tokens: getToken before each connect, refresh shortly before exp with the auth op, and on
// token_expired errors and the server's 1008 "token expired" close.
import test from "node:test";
import assert from "node:assert/strict";
import { connect } from "../tickwire.js";
import { setup, ack, flush, pendingDelays } from "./fake_socket.js";

function jwt(claims) {
  const part = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}.signature`;
}

/** getToken that hands out numbered tokens expiring `life` seconds after the fake clock's now. */
function tokenSource(clockRef, life = 3600) {
  const getToken = async () => {
    getToken.calls++;
    return jwt({ sub: "u", n: getToken.calls, exp: Math.floor(clockRef.clock.t / 1000) + life });
  };
  getToken.calls = 0;
  return getToken;
}

async function tokenClient(options = {}, life) {
  const ref = {};
  const getToken = tokenSource(ref, life);
  // The clock is made inside setup; the first getToken runs at t=0 before ref is filled.
  ref.clock = { t: 0 };
  const env = await setup(connect, { getToken, pingInterval: 0, ...options });
  ref.clock = env.clock;
  return { ...env, getToken };
}

const claims = (token) => JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString());
const urlToken = (url) => new URL(url).searchParams.get("token");

test("getToken is called before connecting and its token goes on the URL", async () => {
  const { Socket, tw, getToken } = await tokenClient();
  assert.equal(getToken.calls, 1);
  assert.equal(claims(urlToken(Socket.last.url)).n, 1);
  tw.close();
});

test("refresh refreshBefore ahead of exp: getToken again, auth sent on the open connection", async () => {
  const { Socket, clock, tw, getToken } = await tokenClient({ refreshBefore: 30_000 });
  const sock = Socket.last;
  sock.open();
  clock.advance(3_570_000 - 1);
  assert.equal(getToken.calls, 1);
  clock.advance(1);
  assert.equal(getToken.calls, 2);
  await flush();
  const auth = sock.lastFrame("auth");
  assert.equal(claims(auth.token).n, 2);
  assert.equal(Socket.instances.length, 1, "same connection");
  // The reply's exp (seconds) schedules the next refresh.
  sock.deliver({ type: "authenticated", id: auth.id, exp: 7200 });
  assert.ok(pendingDelays(clock).includes(7_170_000 - 3_570_000));
  tw.close();
});

test("a token valid for months does not overflow the timer into an immediate refresh", async () => {
  const { Socket, clock, tw, getToken } = await tokenClient({}, 90 * 24 * 3600);
  Socket.last.open();
  const [delay] = pendingDelays(clock);
  assert.equal(delay, 2 ** 31 - 1);
  clock.advance(1000);
  assert.equal(getToken.calls, 1);
  tw.close();
});

test("a token living less than refreshBefore is refreshed at half its life, not in a loop", async () => {
  const { Socket, clock, tw, getToken } = await tokenClient({ refreshBefore: 30_000 }, 20);
  Socket.last.open();
  clock.advance(9_999);
  assert.equal(getToken.calls, 1);
  clock.advance(1);
  assert.equal(getToken.calls, 2);
  await flush();
  const auth = Socket.last.lastFrame("auth");
  Socket.last.deliver({ type: "authenticated", id: auth.id }); // no exp: read from the JWT (t=10s, exp 30s)
  clock.advance(9_999);
  assert.equal(getToken.calls, 2);
  clock.advance(1);
  assert.equal(getToken.calls, 3);
  tw.close();
});

test("a token_expired error brings a new token with auth; a refused subscribe goes again after it", async () => {
  const { Socket, tw, getToken, errors } = await tokenClient();
  const sock = Socket.last;
  sock.open();
  const sub = tw.subscribe("quotes/AAPL", () => {});
  await flush();
  const first = sock.lastFrame("subscribe");
  sock.deliver({ type: "error", code: "token_expired", message: "token expired", id: first.id });
  assert.equal(errors.at(-1).code, "token_expired");
  await flush();
  assert.equal(getToken.calls, 2);
  const auth = sock.lastFrame("auth");
  assert.equal(claims(auth.token).n, 2);
  assert.equal(sock.frames("subscribe").length, 1, "not before the new token is accepted");
  sock.deliver({ type: "authenticated", id: auth.id });
  const again = sock.lastFrame("subscribe");
  assert.notEqual(again.id, first.id);
  ack(sock, again);
  await sub.ready;

  // Without an id too; and a refused auth is not retried in a loop.
  sock.deliver({ type: "error", code: "token_expired", message: "token expired" });
  await flush();
  assert.equal(getToken.calls, 3);
  const auth2 = sock.lastFrame("auth");
  sock.deliver({ type: "error", code: "token_expired", message: "still expired", id: auth2.id });
  await flush();
  assert.equal(getToken.calls, 3);
  tw.close();
});

test("the server's 1008 'token expired' close: reconnect with a fresh token from getToken", async () => {
  const { Socket, clock, tw, getToken, errors } = await tokenClient();
  Socket.last.open();
  Socket.last.serverClose(1008, "token expired");
  assert.equal(errors.at(-1).closeCode, 1008);
  assert.equal(errors.at(-1).reason, "token expired");
  clock.advance(pendingDelays(clock)[0]);
  await flush();
  assert.equal(getToken.calls, 2);
  assert.equal(Socket.instances.length, 2);
  assert.equal(claims(urlToken(Socket.last.url)).n, 2);
  tw.close();
});

test("getToken failing is reported and retried with backoff", async () => {
  let fail = true;
  const Socketless = await setup(connect, {
    getToken: async () => { if (fail) throw new Error("auth server down"); return "tok"; },
  });
  const { Socket, clock, tw, errors, states } = Socketless;
  assert.equal(Socket.instances.length, 0);
  assert.equal(errors.at(-1).code, "token_error");
  assert.match(errors.at(-1).message, /auth server down/);
  assert.deepEqual(states, ["connecting", "reconnecting"]);
  fail = false;
  clock.advance(pendingDelays(clock)[0]);
  await flush();
  assert.equal(Socket.instances.length, 1);
  assert.match(Socket.last.url, /token=tok$/);
  tw.close();
});

test("a static token is never refreshed", async () => {
  const { Socket, clock, tw } = await setup(connect, { token: jwt({ exp: 60 }), pingInterval: 0 });
  Socket.last.open();
  assert.equal(clock.pending.size, 0, "no ping (turned off) and no refresh timer");
  clock.advance(59_000);
  assert.equal(Socket.instances.length, 1);
  assert.equal(Socket.last.frames().length, 0);
  tw.close();
});

test("close() while getToken is pending makes no socket", async () => {
  let release;
  const Socketless = await setup(connect, { getToken: () => new Promise((r) => { release = r; }) });
  Socketless.tw.close();
  release("tok");
  await flush();
  assert.equal(Socketless.Socket.instances.length, 0);
});
