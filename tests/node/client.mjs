// A policyhub client in another language: Node.js with @grpc/grpc-js, the .proto files
// loaded at run time by @grpc/proto-loader (no generated code, no server reflection).
//
//   node tests/node/client.mjs <host:port> <domain_id>
//
// Creates a policy, reads it back, assigns it to a user, asks two authorization questions
// and the server version; prints one JSON line with the results and exits 0, or prints the
// failure (with the gRPC error message) to stderr and exits 1.
import path from "node:path";
import { fileURLToPath } from "node:url";

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const PROTO_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "proto");
const PROTO_FILES = [
  "spaceone/api/core/v1/query.proto",
  "spaceone/api/core/v1/server_info.proto",
  "spaceone/api/repository/v1/repository.proto",
  "spaceone/api/repository/v1/policy.proto",
  "spaceone/api/repository/v1/assignment.proto",
];
const DEADLINE_MS = 10_000;

class CheckFailed extends Error {}

function expect(condition, message, actual) {
  if (!condition) {
    throw new CheckFailed(`${message} (got ${JSON.stringify(actual)})`);
  }
}

function sameArray(actual, expected) {
  return JSON.stringify(actual) === JSON.stringify(expected);
}

// One unary call as a promise, always with a deadline.
function unary(stub, method, request) {
  return new Promise((resolve, reject) => {
    stub[method](request, { deadline: new Date(Date.now() + DEADLINE_MS) }, (error, response) => {
      if (error) {
        error.rpc = `${stub.constructor.serviceName ?? ""}.${method}`;
        reject(error);
      } else {
        resolve(response);
      }
    });
  });
}

async function run(address, domain) {
  const definition = protoLoader.loadSync(PROTO_FILES, {
    includeDirs: [PROTO_DIR],
    keepCase: true,
    enums: String,
    longs: Number,
    defaults: true,
    oneofs: true,
  });
  const loaded = grpc.loadPackageDefinition(definition);
  const repository = loaded.spaceone.api.repository.v1;
  const core = loaded.spaceone.api.core.v1;
  const credentials = grpc.credentials.createInsecure();
  const policyStub = new repository.Policy(address, credentials);
  const assignmentStub = new repository.Assignment(address, credentials);
  const serverInfoStub = new core.ServerInfo(address, credentials);
  const stubs = [policyStub, assignmentStub, serverInfoStub];
  try {
    // (1) a policy with a permission and a statement
    const policyId = "node-reader";
    const permissions = ["inventory.Server.read"];
    const statement = { effect: "DENY", actions: ["inventory.Server.*"], resources: ["srv/secret/*"] };
    const created = await unary(policyStub, "create", {
      policy_id: policyId, name: "Node reader", description: "created by tests/node/client.mjs",
      permissions, statements: [statement], domain_id: domain,
    });
    expect(created.policy_id === policyId, "create: policy_id", created.policy_id);

    // (2) read it back
    const got = await unary(policyStub, "get", { policy_id: policyId, domain_id: domain });
    expect(got.policy_id === policyId, "get: policy_id", got.policy_id);
    expect(got.name === "Node reader", "get: name", got.name);
    expect(got.domain_id === domain, "get: domain_id", got.domain_id);
    expect(got.state === "ENABLED", "get: state", got.state);
    expect(sameArray(got.permissions, permissions), "get: permissions", got.permissions);
    expect(got.statements.length === 1, "get: one statement", got.statements);
    const [gotStatement] = got.statements;
    expect(gotStatement.effect === "DENY" && sameArray(gotStatement.actions, statement.actions) &&
           sameArray(gotStatement.resources, statement.resources), "get: statement", gotStatement);
    expect(got.version === 1, "get: version", got.version);
    expect(typeof got.etag === "string" && got.etag.length > 0, "get: etag", got.etag);
    expect(got.etag === created.etag, "get: etag as created", [created.etag, got.etag]);
    expect(got.is_managed === false, "get: is_managed", got.is_managed);
    expect(got.created_at !== "", "get: created_at", got.created_at);

    // (3) assign it to a user
    const user = { type: "USER", id: "node-alice" };
    const assignment = await unary(assignmentStub, "create", {
      subject: user, grant: { type: "POLICY", id: policyId }, domain_id: domain,
    });
    expect(assignment.assignment_id.startsWith("asg-"), "assign: assignment_id", assignment.assignment_id);
    expect(assignment.subject.type === "USER" && assignment.subject.id === user.id, "assign: subject",
           assignment.subject);
    expect(assignment.grant.type === "POLICY" && assignment.grant.id === policyId, "assign: grant",
           assignment.grant);
    expect(assignment.domain_id === domain, "assign: domain_id", assignment.domain_id);

    // (4) authorization questions
    const ask = (resource) => unary(assignmentStub, "check", {
      subject: user, action: "inventory.Server.read", resource, domain_id: domain,
    });
    const allowed = await ask("srv/web/1");
    expect(allowed.decision === "ALLOW" && allowed.reason === "ALLOWED", "check allowed: decision", allowed);
    expect(allowed.policy_id === policyId, "check allowed: policy_id", allowed.policy_id);
    expect(allowed.via.length === 1 && allowed.via[0].type === "USER" && allowed.via[0].id === user.id,
           "check allowed: via", allowed.via);
    const denied = await ask("srv/secret/1");
    expect(denied.decision === "DENY" && denied.reason === "EXPLICIT_DENY", "check denied: decision", denied);
    expect(denied.policy_id === policyId && denied.statement_index === 0, "check denied: deciding statement",
           denied);

    // (5) the server version
    const version = await unary(serverInfoStub, "get_version", {});
    expect(typeof version.version === "string" && version.version.length > 0, "get_version", version);

    return {
      ok: true,
      policy: {
        policy_id: got.policy_id, name: got.name, state: got.state, permissions: got.permissions,
        statements: got.statements.map(({ effect, actions, resources }) => ({ effect, actions, resources })),
        version: got.version, etag: got.etag, is_managed: got.is_managed, domain_id: got.domain_id,
      },
      assignment: {
        assignment_id: assignment.assignment_id, subject: assignment.subject, grant: assignment.grant,
        domain_id: assignment.domain_id,
      },
      checks: {
        allowed: { decision: allowed.decision, reason: allowed.reason, policy_id: allowed.policy_id,
                   statement_index: allowed.statement_index, via: allowed.via },
        denied: { decision: denied.decision, reason: denied.reason, policy_id: denied.policy_id,
                  statement_index: denied.statement_index, via: denied.via },
      },
      server_version: version.version,
    };
  } finally {
    stubs.forEach((stub) => stub.close());
  }
}

async function main() {
  const [address, domain] = process.argv.slice(2);
  if (!address || !domain) {
    console.error("usage: node client.mjs <host:port> <domain_id>");
    return 2;
  }
  try {
    console.log(JSON.stringify(await run(address, domain)));
    return 0;
  } catch (error) {
    if (error instanceof CheckFailed) {
      console.error(`check failed: ${error.message}`);
    } else if (error && typeof error.code === "number" && "details" in error) {
      console.error(`gRPC call ${error.rpc ?? "?"} failed: ${error.message}`);
    } else {
      console.error(`failed: ${error?.stack ?? error}`);
    }
    return 1;
  }
}

process.exitCode = await main();
