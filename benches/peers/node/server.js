// The fan-out benchmark's Node.js peer: the broker a Node user would write with the `ws` package.
// Same protocol as tickwire for what the benchmark uses: subscribers open /ws?subscribe=a,b and
// get {"type":"msg","topic":..,"seq":..,"data":..} text frames; the publisher opens /publish and
// sends {"topic":..,"data":..} text frames. Each publication is serialized once and sent to every
// subscriber of its topic (ws frames it per socket). Prints "subscribe ADDR" / "publish ADDR".
// `--deflate` turns on ws's perMessageDeflate (off by default, so the fan-out rows are unchanged):
// ws's defaults (context takeover, zlib's default level) except the threshold, set to tickwire's
// `--compress-min` of 256 bytes (ws's default of 1024 would leave a ~330-byte quote plain).
'use strict';
const http = require('http');
const { WebSocketServer } = require('ws');

const server = http.createServer((req, res) => { res.writeHead(404); res.end('not found\n'); });
// perMessageDeflate off unless --deflate: the generator offers no compression in the plain rows.
const deflate = process.argv.includes('--deflate');
const wss = new WebSocketServer({
  server,
  perMessageDeflate: deflate ? { threshold: 256 } : false,
  maxPayload: 64 * 1024,
});
const subscribers = new Map(); // topic -> Set of sockets
const seqs = new Map();

wss.on('connection', (ws, req) => {
  if (req.url.startsWith('/publish')) {
    ws.on('message', (raw) => {
      let pub;
      try { pub = JSON.parse(raw); } catch { return; }
      const topic = String(pub.topic);
      const seq = (seqs.get(topic) || 0) + 1;
      seqs.set(topic, seq);
      const text = JSON.stringify({ type: 'msg', topic, seq, data: pub.data });
      const set = subscribers.get(topic);
      if (set) for (const sub of set) sub.send(text);
    });
    return;
  }
  const query = new URL(req.url, 'http://x').searchParams.get('subscribe') || '';
  const topics = query.split(',').filter((t) => t.length > 0);
  for (const t of topics) {
    if (!subscribers.has(t)) subscribers.set(t, new Set());
    subscribers.get(t).add(ws);
  }
  ws.on('close', () => { for (const t of topics) subscribers.get(t).delete(ws); });
  ws.on('error', () => {});
});

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  process.stdout.write(`subscribe 127.0.0.1:${port}\npublish 127.0.0.1:${port}\n`);
});
