// Initiates replica set rs0 (mongo1, mongo2, mongo3) once, then waits until it has a primary.
// Idempotent: run again against an initiated set, it only waits for the primary.
// Used by the mongo-init service of deploy/compose.yaml (mongosh, connected to mongo1).
const config = {
  _id: "rs0",
  members: [
    { _id: 0, host: "mongo1:27017", priority: 2 },
    { _id: 1, host: "mongo2:27017", priority: 1 },
    { _id: 2, host: "mongo3:27017", priority: 1 },
  ],
};

function initiated() {
  try {
    rs.status();
    return true;
  } catch (error) {
    if (error.codeName === "NotYetInitialized" || error.code === 94) return false;
    throw error;
  }
}

if (initiated()) {
  print("rs0 is already initiated");
} else {
  try {
    rs.initiate(config);
    print("rs0 initiated");
  } catch (error) {
    // Another run initiated it between the check and now.
    if (error.codeName !== "AlreadyInitialized" && error.code !== 23) throw error;
    print("rs0 was initiated concurrently");
  }
}

const deadline = Date.now() + 120 * 1000;
for (;;) {
  let primary = null;
  try {
    primary = rs.status().members.find((member) => member.state === 1);
  } catch (error) {
    print(`waiting for rs0: ${error.message}`);
  }
  if (primary) {
    print(`rs0 primary: ${primary.name}`);
    break;
  }
  if (Date.now() > deadline) {
    print("rs0 has no primary after 120 s");
    quit(1);
  }
  sleep(1000);
}
