#!/usr/bin/env bash
# Every benchmark prints its figure beside a baseline measured in the same run.
# Loopback only, bounded in size and time. Pass a name to run one: make bench B=upload
# (B=feed: 100k videos, 10k users, GetFeed miss/hit beside a bare Milvus search / Redis GET;
#  B=chat: one message to 1,000 WebSocket/gRPC subscribers over 2 svc_chat instances beside a
#  raw Redis PUBLISH to 1,000 raw subscribers, sustained messages/s, memory per subscriber;
#  B=live: RTMP ingest glass-to-glass (Chromium+hls.js), first segment, CPU/ladder vs ffmpeg->HLS;
#  B=web: web app page load -> first feed frame in Chromium beside hls.js alone, bundle gzip size;
#  B=upload-load: 100/500/1,000 concurrent tus uploads through Envoy (one user each) beside the
#  same clients writing the same bytes through the same Envoy config to a bare file sink;
#  uploads/s, p50/p95, 5xx, svc_upload peak RSS, every accepted upload checked published;
#  B=scan: the malware scan (clamd) of a 500 MB upload beside clamscan on the same file;
#  B=models: each Triton model's p50/p95/p99 and throughput, dynamic batching off/on, beside
#  the same model.py + onnxruntime in-process on the same inputs;
#  B=chaos: uploads and events through kill -9 of kafka, svc_transcode, svc_stream, redis, a
#  postgres restart and Triton/trending fault flags on a private mesh; lost (must be 0) and
#  recovery times beside the same load with no fault).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/datastores.sh start >/dev/null
for b in ${B:-transcode upload upload-load playback events feed chat live web scan chaos}; do
  echo "=== bench_$b"
  .venv/bin/python "bench/bench_${b//-/_}.py"
done
