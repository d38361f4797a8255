#!/usr/bin/env bash
# Regenerates gen/ from proto/: Python stubs (+ .pyi via mypy-protobuf) and
# the Envoy descriptor set gen/reels.pb; and web/src/gen/: the web client's
# TypeScript messages and service descriptors (protoc-gen-es v2, from web/'s
# package-lock.json; @connectrpc/connect makes typed clients of them). Run from
# anywhere; paths are relative to the repo root.
#   scripts/gen.sh                     # regenerate gen/ and web/src/gen/
#   scripts/gen.sh OUT_DIR [WEB_OUT]   # generate into OUT_DIR (and WEB_OUT) instead
#                                      # (used by check_gen.sh)
# PYTHON defaults to .venv/bin/python.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
OUT="${1:-gen}"
WEB_OUT="${2:-web/src/gen}"
PY_BIN_DIR="$(dirname "$PYTHON")"

# Plugins of mypy-protobuf live next to the interpreter.
MYPY_PLUGIN="$PY_BIN_DIR/protoc-gen-mypy"
MYPY_GRPC_PLUGIN="$PY_BIN_DIR/protoc-gen-mypy_grpc"
for plugin in "$MYPY_PLUGIN" "$MYPY_GRPC_PLUGIN"; do
  if [[ ! -x "$plugin" ]]; then
    echo "gen.sh: missing $plugin (pip install mypy-protobuf into the venv)" >&2
    exit 1
  fi
done
# protoc-gen-es is the pinned one in web/ (make setup runs npm ci there).
ES_PLUGIN="$ROOT/web/node_modules/.bin/protoc-gen-es"
if [[ ! -x "$ES_PLUGIN" ]]; then
  echo "gen.sh: missing $ES_PLUGIN (make setup runs npm ci in web/)" >&2
  exit 1
fi

# Include roots: googleapis-common-protos (google/api/*.proto) and the
# well-known types bundled with grpc_tools.
GOOGLEAPIS_INCLUDE="$("$PYTHON" - <<'PY'
import os, sys
for p in sys.path:
    if p and os.path.isfile(os.path.join(p, "google", "api", "annotations.proto")):
        print(p)
        break
else:
    sys.exit("gen.sh: google/api/annotations.proto not found (pip install googleapis-common-protos)")
PY
)"
WKT_INCLUDE="$("$PYTHON" -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')"

# Stable, locale-independent file order.
mapfile -t PROTOS < <(cd proto && find reels -name '*.proto' | LC_ALL=C sort)
if [[ ${#PROTOS[@]} -eq 0 ]]; then
  echo "gen.sh: no .proto files under proto/" >&2
  exit 1
fi

# Generated into a sibling folder, then swapped in: processes importing gen/ while
# this runs (tests, a running mesh) never see it empty.
FINAL="$OUT"
OUT="$FINAL.new.$$"
WEB_FINAL="$WEB_OUT"
WEB_OUT="$WEB_FINAL.new.$$"
trap 'rm -rf "$OUT" "$WEB_OUT"' EXIT
rm -rf "$OUT" "$WEB_OUT"
mkdir -p "$OUT" "$WEB_OUT"

"$PYTHON" -m grpc_tools.protoc \
  -I proto \
  -I "$GOOGLEAPIS_INCLUDE" \
  -I "$WKT_INCLUDE" \
  --plugin=protoc-gen-mypy="$MYPY_PLUGIN" \
  --plugin=protoc-gen-mypy_grpc="$MYPY_GRPC_PLUGIN" \
  --python_out="$OUT" \
  --grpc_python_out="$OUT" \
  --mypy_out=quiet:"$OUT" \
  --mypy_grpc_out=quiet:"$OUT" \
  "${PROTOS[@]}"

# Envoy's descriptor set also carries google.rpc error details, so the JSON
# transcoder can render BadRequest / ResourceInfo / RetryInfo in error bodies.
"$PYTHON" -m grpc_tools.protoc \
  -I proto \
  -I "$GOOGLEAPIS_INCLUDE" \
  -I "$WKT_INCLUDE" \
  --descriptor_set_out="$OUT/reels.pb" \
  --include_imports \
  --include_source_info \
  "${PROTOS[@]}" google/rpc/error_details.proto google/rpc/status.proto

# gen/reels joins the runtime package reels/ (both use extend_path).
cat > "$OUT/reels/__init__.py" <<'PY'
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
PY
: > "$OUT/reels/v1/__init__.py"

# The web client's TypeScript: every message and service of proto/, plus the
# googleapis files they import (google/api/annotations.proto, ...), so that the
# generated imports resolve; the well-known types (google/protobuf/*) come from
# @bufbuild/protobuf/wkt. Found by following the imports: nothing to keep in sync.
mapfile -t GOOGLE_DEPS < <("$PYTHON" - "$GOOGLEAPIS_INCLUDE" "${PROTOS[@]}" <<'PY'
import re
import sys
from pathlib import Path

include, roots = Path(sys.argv[1]), sys.argv[2:]
imports = re.compile(r'^\s*import\s+(?:public\s+|weak\s+)?"([^"]+)"\s*;', re.M)
seen: set[str] = set()
todo = [Path("proto") / p for p in roots]
while todo:
    for name in imports.findall(todo.pop().read_text()):
        if name.startswith(("reels/", "google/protobuf/")) or name in seen:
            continue
        seen.add(name)
        todo.append(include / name)
print("\n".join(sorted(seen)))
PY
)
"$PYTHON" -m grpc_tools.protoc \
  -I proto \
  -I "$GOOGLEAPIS_INCLUDE" \
  -I "$WKT_INCLUDE" \
  --plugin=protoc-gen-es="$ES_PLUGIN" \
  --es_out="$WEB_OUT" \
  --es_opt=target=ts \
  "${PROTOS[@]}" "${GOOGLE_DEPS[@]}"

swap() {  # swap NEW FINAL: FINAL becomes NEW in two renames
  rm -rf "$2.old.$$"
  if [[ -e "$2" ]]; then mv "$2" "$2.old.$$"; fi
  mv "$1" "$2"
  rm -rf "$2.old.$$"
}
swap "$OUT" "$FINAL"
swap "$WEB_OUT" "$WEB_FINAL"
echo "gen.sh: generated ${#PROTOS[@]} protos into $FINAL/ and $WEB_FINAL/"
