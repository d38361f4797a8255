"""Model serving: each Triton-served model's latency and throughput beside the same model
run in-process by onnxruntime on the same inputs, in the same run.

Issue 13 ("Model operations"): per model on this CPU, p50/p95/p99 and throughput with
dynamic batching off and on, against onnxruntime in-process (Triton's overhead as a
ratio). Goals: ranker p95 <= 10 ms for 200 candidates; nsfw p95 <= 200 ms per frame
and <= 1.5 s per 16-frame request (nsfw only when models/repository/nsfw is built).

* Triton: the real tritonserver (reels_dev/infra/triton.py) on the project's
  repository, explicit model control, loopback gRPC (tritonclient, sync), one
  request at a time for latency; ``--concurrency`` callers for throughput.
  Dynamic batching is switched with a load RPC carrying a config override
  (reels_dev/models.py: ``load <model> --dynamic-batching on|off``), no restart;
  models whose config says ``max_batch_size: 0`` (ranker, nsfw: one request is
  already the whole batch) cannot batch across requests, so they have one figure.
* Baseline: the version's own model.py (what Triton's Python backend runs:
  onnxruntime + the model's pre/post-processing, same threads setting) called
  in-process in Triton's serving venv (.tools/triton-venv, numpy 1.x) through a
  stand-in for ``triton_python_backend_utils``, on the very same inputs (saved
  as .npy), one request at a time. Triton's overhead = Triton / in-process.
* Triton's own view: ``nv_inference_request_summary_us`` quantiles (server side,
  no network) from its metrics port, for the record.

Inputs (seeded): ranker float32 [200, 18] (one feed request's candidates); text one
title+description+hashtags string per request (svc_transcode's call); visual
uint8 [16, 224, 224, 3] (one video's sampled frames); nsfw uint8 [1, 224, 224, 3] and
[16, 224, 224, 3].

Bounded: fixed request counts (``--scale`` multiplies them) and ``--timeout`` seconds
in all (default 170). Loopback only. Usage: ``make bench B=models``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "gen")]

GOAL_RANKER_P95_MS = 10.0
GOAL_NSFW_FRAME_P95_MS = 200.0
GOAL_NSFW_BATCH_MS = 1500.0


@dataclass(frozen=True)
class Case:
    """One measured request shape of one model."""

    name: str  # what the figure is called
    model: str
    input_name: str
    datatype: str  # Triton's: FP32, UINT8, BYTES
    output: str
    n: int  # sequential requests for latency
    n_throughput: int  # requests for throughput (all callers together)
    batching: bool  # whether the model can batch across requests (max_batch_size > 0)


CASES = (
    Case("ranker [200 candidates]", "ranker", "features", "FP32", "scores", 300, 400, False),
    Case("text_embedding [1 text]", "text_embedding", "TEXT", "BYTES", "EMBEDDING", 150, 200, True),
    Case("visual_embedding [16 frames]", "visual_embedding", "FRAMES", "UINT8", "EMBEDDING",
         12, 16, True),
    Case("nsfw [1 frame]", "nsfw", "FRAMES", "UINT8", "nsfw_score", 30, 30, False),
    Case("nsfw [16 frames]", "nsfw", "FRAMES", "UINT8", "nsfw_score", 6, 6, False),
)  # fmt: skip


def make_input(case: Case, rng: np.random.Generator) -> np.ndarray:
    if case.model == "ranker":
        return rng.normal(size=(200, 18)).astype(np.float32)
    if case.model == "text_embedding":
        text = "Street food tour in Lisbon: pastel de nata at dawn #food #travel #lisbon"
        return np.array([[text.encode()]], dtype=np.object_)
    n = 1 if "[1 frame]" in case.name else 16
    return rng.integers(0, 256, size=(n, 224, 224, 3), dtype=np.uint8)


def pct(samples: Sequence[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def figures(samples: Sequence[float]) -> dict[int, float]:
    return {p: pct(samples, p) for p in (50, 95, 99)}


def line(name: str, fig: dict[int, float], extra: str = "") -> str:
    return f"  {name:<40} p50 {fig[50]:8.2f} ms  p95 {fig[95]:8.2f} ms  p99 {fig[99]:8.2f} ms" + (
        f"  {extra}" if extra else ""
    )


# ------------------------------------------------------------------ baseline (subprocess)


def _fake_pb_utils() -> types.ModuleType:
    """Just enough of triton_python_backend_utils for the models' model.py."""
    pb = types.ModuleType("triton_python_backend_utils")

    class TritonModelException(Exception):
        pass

    class TritonError:
        def __init__(self, message: str) -> None:
            self.message = message

    class Tensor:
        def __init__(self, name: str, array: np.ndarray) -> None:
            self.name, self.array = name, array

        def as_numpy(self) -> np.ndarray:
            return self.array

    class InferenceResponse:
        def __init__(self, output_tensors: list[Any], error: Any = None) -> None:
            self.output_tensors, self.error = output_tensors, error

    def by_name(items: list[dict[str, Any]], name: str) -> dict[str, Any]:
        return next(i for i in items if i["name"] == name)

    dtypes = {"TYPE_FP32": np.float32, "TYPE_UINT8": np.uint8, "TYPE_STRING": np.object_}
    pb.TritonModelException = TritonModelException  # type: ignore[attr-defined]
    pb.TritonError = TritonError  # type: ignore[attr-defined]
    pb.Tensor = Tensor  # type: ignore[attr-defined]
    pb.InferenceResponse = InferenceResponse  # type: ignore[attr-defined]
    pb.get_input_tensor_by_name = lambda request, name: request[name]  # type: ignore[attr-defined]
    pb.get_input_config_by_name = lambda c, n: by_name(c.get("input", []), n)  # type: ignore[attr-defined]
    pb.get_output_config_by_name = lambda c, n: by_name(c.get("output", []), n)  # type: ignore[attr-defined]
    pb.triton_string_to_numpy = lambda s: dtypes[s]  # type: ignore[attr-defined]
    return pb


def baseline_main(work: Path) -> None:
    """In Triton's serving venv: each case's model.py in-process on the saved inputs."""
    pb = _fake_pb_utils()
    sys.modules["triton_python_backend_utils"] = pb
    plan = json.loads((work / "plan.json").read_text())
    out: dict[str, list[float]] = {}
    models: dict[str, Any] = {}
    for item in plan:
        model = item["model"]
        if model not in models:
            spec = importlib.util.spec_from_file_location(f"m_{model}", item["model_py"])
            assert spec and spec.loader
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            instance = module.TritonPythonModel()
            instance.initialize({"model_config": json.dumps(item["config"])})
            models[model] = instance
        instance = models[model]
        x = np.load(work / item["input"], allow_pickle=True)
        request = {item["input_name"]: pb.Tensor(item["input_name"], x)}
        for _ in range(3):  # warm-up, as Triton's side gets
            instance.execute([request])
        samples = []
        for _ in range(item["n"]):
            t0 = time.perf_counter_ns()
            (response,) = instance.execute([request])
            samples.append((time.perf_counter_ns() - t0) / 1e6)
            if response.error is not None:
                raise SystemExit(f"{item['name']}: {response.error.message}")
        out[item["name"]] = samples
    (work / "baseline.json").write_text(json.dumps(out))


# ------------------------------------------------------------------ Triton side


def triton_infer(client: Any, case: Case, x: np.ndarray) -> tuple[float, str]:
    import tritonclient.grpc as tg

    tensor = tg.InferInput(case.input_name, list(x.shape), case.datatype)
    tensor.set_data_from_numpy(x)
    t0 = time.perf_counter_ns()
    result = client.infer(
        case.model, [tensor], outputs=[tg.InferRequestedOutput(case.output)], client_timeout=60
    )
    return (time.perf_counter_ns() - t0) / 1e6, result.get_response().model_version


def throughput(addr: str, case: Case, x: np.ndarray, callers: int, total: int) -> float:
    """Requests/s of ``callers`` threads (one gRPC channel each) sending ``total``."""
    import tritonclient.grpc as tg

    clients = [tg.InferenceServerClient(addr) for _ in range(callers)]
    for c in clients:
        triton_infer(c, case, x)  # each channel connected, outside the clock
    left = [total]
    lock = threading.Lock()

    def run(c: Any) -> None:
        while True:
            with lock:
                if left[0] <= 0:
                    return
                left[0] -= 1
            triton_infer(c, case, x)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(callers) as pool:
        list(pool.map(run, clients))
    elapsed = time.perf_counter() - t0
    for c in clients:
        c.close()
    return total / elapsed


def triton_quantiles(metrics_port: int) -> dict[tuple[str, str], dict[str, float]]:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[tuple[str, str], dict[str, float]] = {}
    for row in text.splitlines():
        if row.startswith("nv_inference_request_summary_us{") and "quantile=" in row:
            labels, value = row.rsplit(" ", 1)
            get = {
                k: v.strip('"')
                for k, v in (p.split("=", 1) for p in labels[labels.index("{") + 1 : -1].split(","))
            }
            out.setdefault((get["model"], get["version"]), {})[get["quantile"]] = float(value)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", type=int, default=4, help="callers for throughput")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every request count")
    ap.add_argument("--timeout", type=float, default=170.0, help="seconds for the whole run")
    ap.add_argument("--baseline", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.baseline:
        baseline_main(args.baseline)
        return 0

    import tritonclient.grpc as tg

    from reels_dev.infra.process import free_port
    from reels_dev.infra.triton import MODEL_REPOSITORY, SERVING_VENV, triton_process
    from reels_dev.models import Operator, repository_config

    started = time.monotonic()
    deadline = started + args.timeout
    present = {
        c.model
        for c in CASES
        if (MODEL_REPOSITORY / c.model / "config.pbtxt").exists()
        and any((MODEL_REPOSITORY / c.model).glob("[0-9]*/model.onnx"))
    }
    if "nsfw" not in present:
        print("nsfw: not in models/repository (not built): its cases and goals are skipped")
    missing = {"ranker", "text_embedding", "visual_embedding"} - present
    if missing:
        print(f"models not built: {sorted(missing)} (run `make models`)", file=sys.stderr)
        return 2
    cases = [
        Case(**{**c.__dict__, "n": max(3, int(c.n * args.scale)),
                "n_throughput": max(3, int(c.n_throughput * args.scale))})
        for c in CASES
        if c.model in present
    ]  # fmt: skip
    models = sorted({c.model for c in cases})
    rng = np.random.default_rng(13)
    inputs = {c.name: make_input(c, rng) for c in cases}

    with tempfile.TemporaryDirectory(prefix="bench-models-") as tmp:
        work = Path(tmp)
        http, grpc_port, metrics_port = free_port(), free_port(), free_port()
        proc = triton_process(
            http, grpc_port, metrics_port, models=models, log_dir=work, ready_timeout=120
        )
        print(f"starting tritonserver with {', '.join(models)} (explicit model control)...")
        t0 = time.monotonic()
        proc.start()
        print(f"  ready in {time.monotonic() - t0:.1f} s; {os.cpu_count()} CPUs shared")
        addr = f"127.0.0.1:{grpc_port}"
        op = Operator(addr, MODEL_REPOSITORY)
        client = tg.InferenceServerClient(addr)
        try:
            # The baseline runs first, alone on the CPU with the same inputs (Triton idle).
            plan = []
            for i, c in enumerate(cases):
                (version,) = op.serving(c.model)
                np.save(work / f"in{i}.npy", inputs[c.name], allow_pickle=True)
                plan.append(
                    {
                        "name": c.name,
                        "model": c.model,
                        "input": f"in{i}.npy",
                        "input_name": c.input_name,
                        "n": c.n,
                        "model_py": str(MODEL_REPOSITORY / c.model / version / "model.py"),
                        "config": repository_config(MODEL_REPOSITORY, c.model),
                    }
                )
            (work / "plan.json").write_text(json.dumps(plan))
            print("in-process baseline (the models' model.py + onnxruntime, Triton's venv)...")
            subprocess.run(
                [str(SERVING_VENV / "bin" / "python"), __file__, "--baseline", str(work)],
                check=True,
                timeout=max(10.0, deadline - time.monotonic()),
                env={**os.environ, "PYTHONPATH": ""},
            )
            baseline = json.loads((work / "baseline.json").read_text())

            results: dict[str, dict[str, Any]] = {}
            for c in cases:
                if time.monotonic() > deadline:
                    print(f"stopped after {args.timeout:g} s", file=sys.stderr)
                    return 3
                x = inputs[c.name]
                for _ in range(3):
                    triton_infer(client, c, x)
                samples, versions = [], set()
                for _ in range(c.n):
                    ms, v = triton_infer(client, c, x)
                    samples.append(ms)
                    versions.add(v)
                r: dict[str, Any] = {"triton": figures(samples), "version": ",".join(versions)}
                r["inproc"] = figures(baseline[c.name])
                if c.batching:
                    for mode in (False, True):
                        op.load(c.model, dynamic_batching=mode)
                        key = "rps_batching_on" if mode else "rps_batching_off"
                        r[key] = throughput(addr, c, x, args.concurrency, c.n_throughput)
                    op.load(c.model)  # the repository's config again
                else:
                    r["rps"] = throughput(addr, c, x, args.concurrency, c.n_throughput)
                r["inproc_rps"] = 1000.0 / statistics.fmean(baseline[c.name])
                results[c.name] = r
            server_side = triton_quantiles(metrics_port)
        finally:
            client.close()
            op.close()
            proc.stop()

    print(
        "\nlatency, one request at a time (Triton: loopback gRPC round trip; "
        "in-process: model.py.execute):"
    )
    for c in cases:
        r = results[c.name]
        t, b = r["triton"], r["inproc"]
        print(line(f"{c.name} Triton v{r['version']}", t))
        print(
            line(
                "  baseline: in-process onnxruntime",
                b,
                f"Triton overhead x{t[50] / b[50]:.2f} p50, x{t[95] / b[95]:.2f} p95",
            )
        )
    print(f"\nthroughput, {args.concurrency} concurrent callers (requests/s):")
    for c in cases:
        r = results[c.name]
        base = f"baseline in-process, 1 caller: {r['inproc_rps']:8.1f}"
        if c.batching:
            print(
                f"  {c.name:<40} batching off {r['rps_batching_off']:8.1f}  "
                f"on {r['rps_batching_on']:8.1f}  ({base})"
            )
        else:
            print(
                f"  {c.name:<40} {r['rps']:8.1f}  (max_batch_size 0: no batching across "
                f"requests; {base})"
            )
    print(
        "\nTriton's own request latency (nv_inference_request_summary_us, server side, ms; "
        "every request of the run, concurrent phases and both nsfw shapes included):"
    )
    for (model, version), q in sorted(server_side.items()):
        qs = " ".join(f"p{float(k) * 100:g} {v / 1000:.2f}" for k, v in sorted(q.items()))
        print(f"  {model} v{version}: {qs}")

    ok = True
    ranker = results["ranker [200 candidates]"]["triton"][95]
    ok &= ranker <= GOAL_RANKER_P95_MS
    print(
        f"\ngoal ranker p95 <= {GOAL_RANKER_P95_MS:g} ms for 200 candidates: "
        f"{'MET' if ranker <= GOAL_RANKER_P95_MS else 'NOT MET'} ({ranker:.2f} ms)"
    )
    if "nsfw" in present:
        frame = results["nsfw [1 frame]"]["triton"][95]
        batch = results["nsfw [16 frames]"]["triton"][95]
        ok &= frame <= GOAL_NSFW_FRAME_P95_MS and batch <= GOAL_NSFW_BATCH_MS
        print(
            f"goal nsfw p95 <= {GOAL_NSFW_FRAME_P95_MS:g} ms per frame: "
            f"{'MET' if frame <= GOAL_NSFW_FRAME_P95_MS else 'NOT MET'} ({frame:.1f} ms)"
        )
        print(
            f"goal nsfw <= {GOAL_NSFW_BATCH_MS:g} ms per 16-frame request (p95): "
            f"{'MET' if batch <= GOAL_NSFW_BATCH_MS else 'NOT MET'} ({batch:.0f} ms)"
        )
    else:
        print("goals for nsfw: skipped (model not built)")
    print(f"({time.monotonic() - started:.0f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
