// The publish benchmark's Node.js peer: the ten-line `http` server a user would write to take
// publications. It parses the JSON body (as tickwire checks it), counts a seq and answers
// 202 {"seq":N}, keep-alive as Node does by default. No npm packages.
// Prints "publish ADDR" once it listens.
"use strict";
const http = require("http");

let seq = 0;
const server = http.createServer((req, res) => {
  if (req.method !== "POST" || !req.url.startsWith("/publish")) {
    res.writeHead(404).end();
    return;
  }
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    try {
      JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch (e) {
      res.writeHead(400, { "Content-Type": "application/json" }).end('{"error":"bad json"}\n');
      return;
    }
    seq += 1;
    const body = `{"seq":${seq}}\n`;
    res.writeHead(202, { "Content-Type": "application/json", "Content-Length": body.length });
    res.end(body);
  });
});
server.listen(0, "127.0.0.1", () => {
  const a = server.address();
  console.log(`publish ${a.address}:${a.port}`);
});
