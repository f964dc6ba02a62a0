"""SpaceONE's own gRPC client (spaceone-core 1.12, spaceone-api 1.12) reading the public catalogue
of a policyhub SpaceONE listener, as an installation fetching remote policies does: Repository.list
of the local repository, Policy.get and Policy.list, no domain and no token.

Run by tests/api/test_spaceone_client.py in its own virtualenv:
    client.py <host:port> <managed policy id>
Prints one JSON object: {"ok": true, ...} or {"ok": false, "error": "..."}.
"""

import json
import sys

from google.protobuf.json_format import MessageToDict
from spaceone.core.pygrpc import client


def as_dict(message):
    return MessageToDict(message, preserving_proto_field_name=True)


def main(endpoint, policy_id):
    conn = client(endpoint=endpoint, version="v1")
    repositories = conn.Repository.list({"repository_type": "local"})
    policy = conn.Policy.get({"policy_id": policy_id, "only": ["policy_id", "name", "permissions"]})
    listed = conn.Policy.list({"query": {"filter": [{"k": "policy_id", "v": policy_id, "o": "eq"}]}})
    return {
        "ok": True,
        "services": sorted(conn.api_resources),
        "local_repositories": [as_dict(r) for r in repositories.results],
        "policy": as_dict(policy),
        "listed": as_dict(listed),
    }


if __name__ == "__main__":
    try:
        out = main(sys.argv[1], sys.argv[2])
    except Exception as exc:  # reported as JSON, the test shows it
        out = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(out, sort_keys=True))
