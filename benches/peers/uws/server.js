// The fan-out benchmark's uWebSockets.js peer: the broker a uWS.js user would write, with its
// built-in pub/sub. Same protocol as tickwire for what the benchmark uses: subscribers open
// /ws?subscribe=a,b and get {"type":"msg","topic":..,"seq":..,"data":..} text frames; the
// publisher opens /publish and sends {"topic":..,"data":..} text frames. Each publication is
// serialized once and handed to uWS with one app.publish(topic, text) (uWS frames it per socket).
// Compression off, a large maxBackpressure (uWS drops a publication for a subscriber past it),
// no idle timeout. Prints "subscribe ADDR" / "publish ADDR".
//
// Variants (for BENCHMARKS.md's explanation of the broadcast, not what a user gets by default):
//   --cork   wraps each app.publish in ws.cork() on the publisher's socket (uWS.js 20.30 has no
//            app.cork); uWS already holds the loop's one cork buffer for that socket while its
//            message handler runs, so this changes nothing: it is here to show that.
//   --defer  queues the publications of one read and publishes them from setImmediate, outside
//            uWS's data handler, so no socket holds the cork buffer when the topic tree drains.
// `node server.js --check` only says whether the native uWS.js addon loads here (exit 0) or not.
'use strict';
const path = require('path');

// @trufflesuite/uws-js-unofficial falls back to a pure-JS emulation on top of `ws` when its native
// addon cannot load (with only a warning on stderr): that would be measured as "uws" while being
// `ws`. Load the native addon directly, and refuse to run without it.
function loadNative() {
  const pkg = path.dirname(require.resolve('@trufflesuite/uws-js-unofficial/package.json'));
  const file = path.join(pkg, 'binaries',
    `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`);
  return require(file);
}

let uWS;
try {
  uWS = loadNative();
} catch (e) {
  process.stderr.write(`uWebSockets.js native addon does not load here: ${e.message.split('\n')[0]}\n`);
  process.exit(2);
}
if (process.argv.includes('--check')) {
  process.stdout.write('uWebSockets.js native addon loads\n');
  process.exit(0);
}
const mode = process.argv.includes('--defer') ? 'defer' : process.argv.includes('--cork') ? 'cork' : 'plain';

const seqs = new Map();
let app;
let queued = [];

function publish(topic, text) {
  app.publish(topic, text, false, false);
}

function flushQueued() {
  const list = queued;
  queued = [];
  for (let i = 0; i < list.length; i += 2) publish(list[i], list[i + 1]);
}

function onPublication(ws, message) {
  let pub;
  try { pub = JSON.parse(Buffer.from(message).toString()); } catch { return; }
  const topic = String(pub.topic);
  const seq = (seqs.get(topic) || 0) + 1;
  seqs.set(topic, seq);
  const text = JSON.stringify({ type: 'msg', topic, seq, data: pub.data });
  if (mode === 'plain') {
    publish(topic, text);
  } else if (mode === 'cork') {
    ws.cork(() => publish(topic, text));
  } else {
    if (queued.length === 0) setImmediate(flushQueued);
    queued.push(topic, text);
  }
}

app = uWS.App().ws('/*', {
  compression: uWS.DISABLED,
  maxPayloadLength: 64 * 1024,
  // Far above what the generator's window can queue per subscriber (200 frames of ~170 B).
  maxBackpressure: 1024 * 1024 * 1024,
  closeOnBackpressureLimit: false,
  idleTimeout: 0,
  sendPingsAutomatically: false,
  upgrade: (res, req, context) => {
    const url = req.getUrl();
    const query = req.getQuery() || '';
    res.upgrade(
      { url, query },
      req.getHeader('sec-websocket-key'),
      req.getHeader('sec-websocket-protocol'),
      req.getHeader('sec-websocket-extensions'),
      context,
    );
  },
  open: (ws) => {
    const data = ws.getUserData();
    if (data.url.startsWith('/publish')) {
      data.publisher = true;
      return;
    }
    const list = new URLSearchParams(data.query).get('subscribe') || '';
    for (const t of list.split(',')) if (t.length > 0) ws.subscribe(t);
  },
  message: (ws, message) => {
    if (ws.getUserData().publisher) onPublication(ws, message);
  },
}).listen('127.0.0.1', 0, (token) => {
  if (!token) {
    process.stderr.write('uws peer: listen failed\n');
    process.exit(1);
  }
  const port = uWS.us_socket_local_port(token);
  process.stdout.write(`subscribe 127.0.0.1:${port}\npublish 127.0.0.1:${port}\n`);
});
