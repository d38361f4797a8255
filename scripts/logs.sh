#!/usr/bin/env bash
# Follow the logs of `make up`:  make logs             everything (var/log/*.out.log and
#                                                      supervisord's starts/exits/restarts)
#                               make logs S=svc_rank  one service (var/log/svc_rank.log)
#                               make logs S=triton    otlp, kafka, triton, clamd or envoy
# Services write JSON lines to their own file (REELS_LOG_FILE); every program's console
# output goes to var/log/<program>.out.log (supervisor, reels_dev.infra.procfile).
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:-}
names="svc_upload svc_transcode svc_rank svc_stream svc_chat otlp kafka triton clamd envoy"
if [ -z "$name" ]; then
  exec tail -n 20 -F var/log/supervisord.log var/log/*.out.log
fi
case " $names " in
  *" svc_$name "*) name=svc_$name ;;   # S=rank works too
  *" $name "*) ;;
  *) echo "logs: no part called '$name'; one of: $names" >&2; exit 2 ;;
esac
if [[ $name == svc_* ]]; then
  exec tail -n 50 -F "var/log/$name.log"
fi
exec tail -n 50 -F "var/log/$name.out.log"
