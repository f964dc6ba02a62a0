"""Generate the Python stubs for proto/ into src/policyhub/_gen.

The stubs live under policyhub._gen so that they never collide with the
module paths of the `spaceone-api` distribution; the generated absolute
imports (`from spaceone.api... import`) are rewritten accordingly.
The vendored google/api protos are not generated: googleapis-common-protos
provides them at run time. grpc/reflection/v1 is generated (grpcio-reflection
ships only v1alpha) into policyhub._gen.grpc.
"""
from __future__ import annotations

import pathlib
import re
import shutil
import sys

from grpc_tools import protoc

PROTO_DIR = pathlib.Path(__file__).resolve().parent
OUT_DIR = PROTO_DIR.parent / "src" / "policyhub" / "_gen"
OWN_ROOT = "spaceone"
GENERATED_ROOTS = (OWN_ROOT, "grpc")
# Imports of generated modules (not of the grpc library itself) point into policyhub._gen.
IMPORT_RE = re.compile(r"^(from|import) (spaceone|grpc\.reflection)\.", re.MULTILINE)


def main() -> int:
    if OUT_DIR.exists():
        shutil.rmtree(OUT_DIR)
    OUT_DIR.mkdir(parents=True)
    sources = sorted(
        str(p.relative_to(PROTO_DIR)) for root in GENERATED_ROOTS for p in (PROTO_DIR / root).rglob("*.proto")
    )
    include = pathlib.Path(protoc.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={OUT_DIR}",
        f"--pyi_out={OUT_DIR}",
        f"--grpc_python_out={OUT_DIR}",
        *sources,
    ]
    if protoc.main(args) != 0:
        print("protoc failed", file=sys.stderr)
        return 1
    for path in OUT_DIR.rglob("*.py*"):
        text = path.read_text()
        path.write_text(IMPORT_RE.sub(r"\1 policyhub._gen.\2.", text))
    for directory in [OUT_DIR, *[d for d in OUT_DIR.rglob("*") if d.is_dir()]]:
        (directory / "__init__.py").touch()
    print(f"generated {len(sources)} proto files into {OUT_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
