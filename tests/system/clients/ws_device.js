// A Shelly device played by Node's `ws` package in its default configuration
// (permessage-deflate offered, as by default), for tests/system/test_clients.py.
//
// Usage: NODE_PATH=.../node_modules node ws_device.js URL PLAN [--subprotocol NAME]
//
// PLAN is a JSON file {"device_id": ..., "status": {...}, "update": {...}}: the full status
// to answer Shelly.GetStatus with, and the NotifyStatus params to send once both bootstrap
// requests are answered. --subprotocol offers a subprotocol; nothing else differs from the
// library's defaults.
//
// The device answers Shelly.GetStatus with the status and any other request with the
// JSON-RPC error object the firmware sends. Once it has both bootstrap requests
// (NotifyStatus and Shelly.GetStatus), it sends the update, pings the server (the server
// handles a connection's frames in order, so once the pong is back it has the update), and
// prints one line of JSON: what it offered and what was negotiated, and the requests it got.
// It then keeps the connection open until the server closes it, prints a second line with
// the close code, and exits 0.
'use strict';

const diagnostics = require('diagnostics_channel');
const fs = require('fs');
const WebSocket = require('ws');

// The bootstrap requests the server sends on connect.
const BOOTSTRAP = ['NotifyStatus', 'Shelly.GetStatus'];
// The firmware's JSON-RPC error code for a method it does not have.
const NOT_FOUND = -114;
// Milliseconds after which the device gives up, so that no test run leaves it behind.
const DEADLINE = 60000;

function usage() {
  process.stderr.write('usage: node ws_device.js URL PLAN [--subprotocol NAME]\n');
  process.exit(2);
}

const args = process.argv.slice(2);
let subprotocol = null;
const positional = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--subprotocol' && i + 1 < args.length) {
    subprotocol = args[++i];
  } else if (args[i].startsWith('--')) {
    usage();
  } else {
    positional.push(args[i]);
  }
}
if (positional.length !== 2) usage();
const [url, planPath] = positional;
const plan = JSON.parse(fs.readFileSync(planPath, 'utf8'));
const deviceId = plan.device_id;

// A device's answer to a request: the full status, or the firmware's error object.
function answer(request) {
  const frame = { id: request.id, src: deviceId };
  if (typeof request.src === 'string') frame.dst = request.src;
  if (request.method === 'Shelly.GetStatus') {
    frame.result = plan.status;
  } else {
    frame.error = { code: NOT_FOUND, message: `Method ${request.method} failed: not found` };
  }
  return frame;
}

let offered = null;

const timer = setTimeout(() => {
  process.stderr.write(`gave up after ${DEADLINE} ms\n`);
  process.exit(3);
}, DEADLINE);
timer.unref();

// The offer the library makes, seen on its HTTP request through Node's diagnostics channel
// (subscribed before the library's request starts, in the constructor).
diagnostics.subscribe('http.client.request.start', ({ request }) => {
  offered = request.getHeader('sec-websocket-extensions') ?? null;
});

const ws = subprotocol === null ? new WebSocket(url) : new WebSocket(url, [subprotocol]);
const requests = [];
let extensionsHeader = null;
let updated = false;
let answered = null;
let failed = false;

ws.on('upgrade', (response) => {
  extensionsHeader = response.headers['sec-websocket-extensions'] ?? null;
});

ws.on('message', (data, isBinary) => {
  if (isBinary) return;
  const frame = JSON.parse(data.toString('utf8'));
  if (frame === null || typeof frame !== 'object' || !('id' in frame) || !('method' in frame)) {
    return;
  }
  requests.push(frame);
  ws.send(JSON.stringify(answer(frame)));
  const methods = new Set(requests.map((r) => r.method));
  if (!updated && BOOTSTRAP.every((m) => methods.has(m))) {
    updated = true;
    const server = requests.find((r) => typeof r.src === 'string').src;
    ws.send(JSON.stringify({
      src: deviceId,
      dst: server,
      method: 'NotifyStatus',
      params: { ts: Math.round(Date.now() / 10) / 100, ...plan.update },
    }));
    ws.ping();
  }
});

ws.on('pong', () => {
  if (answered !== null) return;
  answered = requests.length;
  const seen = {
    offered_extensions: offered,
    extensions_header: extensionsHeader,
    extensions: ws.extensions,
    subprotocol: ws.protocol,
    requests: requests.slice(),
  };
  process.stdout.write(JSON.stringify(seen) + '\n');
});

ws.on('close', (code, reason) => {
  const later = requests.slice(answered ?? requests.length).map((r) => r.method);
  process.stdout.write(JSON.stringify({
    close_code: code, close_reason: reason.toString('utf8'), later_requests: later,
  }) + '\n');
  process.exitCode = failed || answered === null ? 1 : 0;
});

ws.on('error', (error) => {
  process.stderr.write(`${error.stack || error}\n`);
  failed = true;
  process.exitCode = 1;
});
