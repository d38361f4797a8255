#!/usr/bin/env bash
# Follow the logs of `make up`:  make logs             everything (var/log/mesh.log)
#                               make logs S=svc_rank  one service (var/log/svc_rank.log)
#                               make logs S=triton    otlp, kafka, triton or envoy
# Services write JSON lines to their own file; the other parts are picked out of
# mesh.log by honcho's "name.1 |" prefix.
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:-}
names="svc_upload svc_transcode svc_rank svc_stream svc_chat otlp kafka triton envoy"
if [ -z "$name" ]; then
  exec tail -n 50 -F var/log/mesh.log
fi
case " $names " in
  *" svc_$name "*) name=svc_$name ;;   # S=rank works too
  *" $name "*) ;;
  *) echo "logs: no part called '$name'; one of: $names" >&2; exit 2 ;;
esac
if [[ $name == svc_* ]]; then
  exec tail -n 50 -F "var/log/$name.log"
fi
tail -n +1 -F var/log/mesh.log | grep --line-buffered -E "^[0-9:]+ $name\.1 +\| "
