// Drives layerserve's gRPC port with grpc-js, the gRPC of Node.js, whose HTTP/2 is Node's
// own (nghttp2): a client written apart from grpcio and tritonclient, for
// tests/service/test_grpc_js_client.py. Messages cross as the bytes the test serialized
// and the bytes the server sent, so what is tested is grpc-js's gRPC and HTTP/2 against
// the server's, with nothing between.
//
// Reads one JSON document on stdin:
//   {"target": "127.0.0.1:PORT", "channel": {grpc-js options}, "steps": [[call, ...], ...]}
// where the calls of a step are sent at once, each step once the one before has ended, and
//   call = {"path": "/inference.GRPCInferenceService/ModelInfer",
//           "kind": "unary" | "client_stream" | "server_stream" | "bidi_stream",
//           "request": "base64" | "requests": ["base64", ...] (client streaming),
//           "metadata": {"key": "value", "key-bin": "base64"}, "deadline_ms": N,
//           "compression": "gzip" | "deflate", "cancel_after_ms": N,
//           "end_after_ms": N (client streaming: the stream stays open that long)}
// and writes {"results": [[{"code", "details", "responses": ["base64"], "trailers"}, ...],
// ...]}, a list per step. Calls of the same compression share a client, and so one
// connection; a compressing client has its own.
"use strict";

const fs = require("fs");
const grpc = require("@grpc/grpc-js");

const COMPRESSION = { gzip: 2, deflate: 1 };
const asIs = (buffer) => buffer;

function metadataOf(entries) {
  const metadata = new grpc.Metadata();
  for (const [key, value] of Object.entries(entries || {})) {
    metadata.add(key, key.endsWith("-bin") ? Buffer.from(value, "base64") : value);
  }
  return metadata;
}

function plain(metadata) {
  const out = {};
  for (const [key, value] of Object.entries(metadata.getMap())) {
    out[key] = Buffer.isBuffer(value) ? value.toString("base64") : value;
  }
  return out;
}

function run(client, call) {
  return new Promise((resolve) => {
    const options = call.deadline_ms === undefined ? {} : { deadline: Date.now() + call.deadline_ms };
    const metadata = metadataOf(call.metadata);
    const responses = [];
    const take = (response) => responses.push(response.toString("base64"));
    const request = () => Buffer.from(call.request, "base64");
    let handle;
    if (call.kind === "unary") {
      handle = client.makeUnaryRequest(call.path, asIs, asIs, request(), metadata, options, (e, r) => {
        if (!e) take(r);
      });
    } else if (call.kind === "server_stream") {
      handle = client.makeServerStreamRequest(call.path, asIs, asIs, request(), metadata, options);
    } else if (call.kind === "client_stream") {
      handle = client.makeClientStreamRequest(call.path, asIs, asIs, metadata, options, (e, r) => {
        if (!e) take(r);
      });
    } else {
      handle = client.makeBidiStreamRequest(call.path, asIs, asIs, metadata, options);
    }
    if (call.kind.endsWith("stream")) {
      handle.on("error", () => {}); // the status below carries it
    }
    if (call.kind === "server_stream" || call.kind === "bidi_stream") handle.on("data", take);
    if (call.kind === "client_stream" || call.kind === "bidi_stream") {
      for (const message of call.requests) handle.write(Buffer.from(message, "base64"));
      setTimeout(() => handle.end(), call.end_after_ms || 0);
    }
    handle.on("status", (status) =>
      resolve({ code: status.code, details: status.details, responses, trailers: plain(status.metadata) }),
    );
    if (call.cancel_after_ms !== undefined) setTimeout(() => handle.cancel(), call.cancel_after_ms);
  });
}

async function main() {
  const plan = JSON.parse(fs.readFileSync(0, "utf8"));
  const clients = new Map();
  const clientFor = (compression) => {
    const key = compression || "";
    if (!clients.has(key)) {
      const options = { ...(plan.channel || {}) };
      if (compression) options["grpc.default_compression_algorithm"] = COMPRESSION[compression];
      clients.set(key, new grpc.Client(plan.target, grpc.credentials.createInsecure(), options));
    }
    return clients.get(key);
  };
  const results = [];
  for (const step of plan.steps) {
    results.push(await Promise.all(step.map((call) => run(clientFor(call.compression), call))));
  }
  for (const client of clients.values()) client.close();
  process.stdout.write(JSON.stringify({ results }));
}

main().catch((e) => {
  process.stderr.write(`${e.stack}\n`);
  process.exit(1);
});
