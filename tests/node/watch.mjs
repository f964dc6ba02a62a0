// Follows a domain's change log from Node.js (@grpc/grpc-js, the .proto files loaded at run time).
//
//   node tests/node/watch.mjs <host:port> <domain_id> <after> <count>
//
// Watches from the continuation token <after> ("-" for none: from the oldest change kept) and
// prints one JSON line per message received: {"heartbeat": {...}} or {"change": {...}}. After
// <count> changes it cancels the watch and exits 0; a watch that ends otherwise (an error, the
// deadline) is printed to stderr, exit 1.
import path from "node:path";
import { fileURLToPath } from "node:url";

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const PROTO_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "proto");
const DEADLINE_MS = 60_000;

function watch(address, domain, after, count) {
  const definition = protoLoader.loadSync(["spaceone/api/repository/v1/change.proto"], {
    includeDirs: [PROTO_DIR],
    keepCase: true,
    enums: String,
    longs: Number,
    defaults: true,
    oneofs: true,
  });
  const repository = grpc.loadPackageDefinition(definition).spaceone.api.repository.v1;
  const stub = new repository.Change(address, grpc.credentials.createInsecure());
  return new Promise((resolve, reject) => {
    let changes = 0;
    let done = false;
    const call = stub.watch(
      { domain_id: domain, after, heartbeat_seconds: 1 },
      { deadline: new Date(Date.now() + DEADLINE_MS) },
    );
    call.on("data", (message) => {
      if (done) {
        return;
      }
      console.log(JSON.stringify({ [message.event]: message[message.event] }));
      if (message.event === "change" && ++changes === count) {
        done = true;
        call.cancel();
        stub.close();
        resolve();
      }
    });
    call.on("error", (error) => {
      if (!done) {
        done = true;
        stub.close();
        reject(error);
      }
    });
    call.on("end", () => {
      if (!done) {
        done = true;
        stub.close();
        reject(new Error("the watch ended"));
      }
    });
  });
}

async function main() {
  const [address, domain, after, count] = process.argv.slice(2);
  if (!address || !domain || !after || !(Number(count) > 0)) {
    console.error("usage: node watch.mjs <host:port> <domain_id> <after|-> <count>");
    return 2;
  }
  try {
    await watch(address, domain, after === "-" ? "" : after, Number(count));
    return 0;
  } catch (error) {
    console.error(`watch failed: ${error?.message ?? error}`);
    return 1;
  }
}

process.exitCode = await main();
