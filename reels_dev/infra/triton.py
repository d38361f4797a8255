"""NVIDIA Triton: run the tritonserver binary from the nvidia-pytriton wheel.

The wheel's server has only the Python backend and expects the stub for the
running Python next to it, so we lay out a server tree under var/triton/ once
(symlinked binary, backend files copied beside the 3.11 stub) and point the
binary at the project's model repository. The environment matters: without
the interpreter's LIBDIR on LD_LIBRARY_PATH the stub loads a libpython that
fails with "'_thread.RLock' object has no attribute '_recursion_count'", and
the stub finds its venv through PATH. That venv is .tools/triton-venv
(requirements/triton.txt, made by scripts/models.sh), not .venv: the stub is
built against numpy 1.x and mangles tensors under the runtime's numpy 2.

`python -m reels_dev.infra.triton` execs the server in the foreground (Procfile),
on REELS_TRITON_HTTP_PORT / REELS_TRITON_GRPC_PORT / REELS_TRITON_METRICS_PORT
(reels_dev.settings.InfraSettings).

Model operations (docs/DECISIONS.md, "Model operations (issue 13)"): the server always
runs with explicit model control (``--model-control-mode=explicit``, one
``--load-model`` per model found in the repository), so models are loaded, reloaded
to a new version and rolled back through the load/unload RPCs (reels_dev/models.py)
without a restart. The repository is versioned (``<model>/<N>/``; each config.pbtxt
says ``version_policy: { latest: { num_versions: 1 } }``). Metrics are served with
``summary_latencies=true``: per model and version, ``nv_inference_request_summary_us``
carries p50/p90/p95/p99 quantiles (this Triton accepts the flag; checked by
tests/integration/test_model_operations.py).

On a machine without an NVIDIA GPU the server runs the models on CPU; it is started
without GPU metrics and pinned memory there, which avoids its NVML/DCGM and pinned
memory errors. One line remains, "CudaDriverHelper has not been initialized.": it is
harmless, and the launcher says so once before the server starts.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from reels.config import environ, var_dir
from reels_dev.infra.process import ManagedProcess
from reels_dev.settings import InfraSettings

_INFRA = InfraSettings.from_env()
PYTRITON_DIR = _INFRA.pytriton_dir
MODEL_REPOSITORY = _INFRA.triton_model_repository
DEFAULT_HTTP_PORT = 18000
DEFAULT_GRPC_PORT = 18001
DEFAULT_METRICS_PORT = 18002
STUB_PYTHON = "3.11"  # the stub must match the interpreter of the venv it runs in


def _source_dir() -> Path:
    src = PYTRITON_DIR / "pytriton" / "tritonserver"
    if not (src / "bin" / "tritonserver").exists():
        raise FileNotFoundError(
            f"tritonserver not found under {src}: run `bash scripts/setup.sh` "
            "(installs nvidia-pytriton into .tools/pytriton)"
        )
    return src


def _copy_if_changed(src: Path, dst: Path) -> None:
    st = src.stat()
    if dst.exists() and not dst.is_symlink():
        dt = dst.stat()
        if dt.st_size == st.st_size and int(dt.st_mtime) == int(st.st_mtime):
            return
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def _symlink(target: Path, link: Path) -> None:
    if link.is_symlink() and Path(os.readlink(link)) == target:
        return
    tmp = link.with_name(link.name + ".tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(target)
    os.replace(tmp, link)


def prepare_server(root: Path | None = None) -> Path:
    """Lay out (idempotently) a tritonserver tree whose Python backend has our stub.

    Safe to call concurrently from several test processes: every file is put in
    place with an atomic rename.
    """
    src = _source_dir()
    root = root or var_dir() / "triton" / "server"
    (root / "bin").mkdir(parents=True, exist_ok=True)
    backend = root / "backends" / "python"
    backend.mkdir(parents=True, exist_ok=True)
    _symlink(src / "bin" / "tritonserver", root / "bin" / "tritonserver")
    _symlink(src / "caches", root / "caches")
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        _copy_if_changed(src / "backends" / "python" / name, backend / name)
    stub = src / "python_backend_stubs" / STUB_PYTHON / "triton_python_backend_stub"
    _copy_if_changed(stub, backend / "triton_python_backend_stub")
    return root


SERVING_VENV = _INFRA.triton_venv


def _venv_bin() -> Path:
    venv_bin = SERVING_VENV / "bin"
    if not (venv_bin / "python").exists():
        raise FileNotFoundError(
            f"Triton's serving venv {SERVING_VENV} is missing: run `bash scripts/models.sh`"
        )
    return venv_bin


def server_env() -> dict[str, str]:
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    libs = [libdir, str(PYTRITON_DIR / "nvidia_pytriton.libs")]
    env = environ()
    if env.get("LD_LIBRARY_PATH"):
        libs.append(env["LD_LIBRARY_PATH"])
    return {
        "LD_LIBRARY_PATH": os.pathsep.join(p for p in libs if p),
        "PATH": os.pathsep.join([str(_venv_bin()), env.get("PATH", "/usr/bin:/bin")]),
        # Models never reach for a hub; everything they load is in the repository.
        "HF_HUB_OFFLINE": "1",
    }


def repository_models(model_repository: Path = MODEL_REPOSITORY) -> list[str]:
    """The models of a repository that can be loaded: a config.pbtxt and at least one
    numeric version directory (a model another change is still adding, without a
    build, is left out rather than failing the start)."""
    if not model_repository.is_dir():
        return []
    return sorted(
        d.name
        for d in model_repository.iterdir()
        if (d / "config.pbtxt").is_file()
        and any(v.is_dir() and v.name.isdigit() for v in d.iterdir())
    )


def server_argv(
    http_port: int,
    grpc_port: int,
    metrics_port: int | None,
    *,
    model_repository: Path = MODEL_REPOSITORY,
    models: Sequence[str] | None = None,
    server_root: Path | None = None,
) -> list[str]:
    """The tritonserver command line, always in explicit model-control mode; ``models``
    (default: :func:`repository_models`) are loaded at start, so one unbuilt model
    does not keep the others from serving, and the rest can be loaded later."""
    root = server_root or prepare_server()
    argv = [
        str(root / "bin" / "tritonserver"),
        f"--model-repository={model_repository}",
        f"--backend-directory={root / 'backends'}",
        f"--cache-directory={root / 'caches'}",
        "--http-address=127.0.0.1",
        "--grpc-address=127.0.0.1",
        f"--http-port={http_port}",
        f"--grpc-port={grpc_port}",
        "--exit-timeout-secs=5",
        "--log-verbose=0",
    ]
    if metrics_port is None:
        argv.append("--allow-metrics=false")
    else:
        argv += [
            "--metrics-address=127.0.0.1",
            f"--metrics-port={metrics_port}",
            # Per-model p50/p90/p95/p99 (nv_inference_request_summary_us{quantile=...}).
            "--metrics-config=summary_latencies=true",
        ]
    if not has_gpu():
        # Nothing to pin or to read GPU metrics from: spares the NVML/DCGM and pinned
        # memory errors the server logs on a CPU-only machine.
        argv += ["--allow-gpu-metrics=false", "--pinned-memory-pool-byte-size=0"]
    if models is None:
        models = repository_models(model_repository)
    argv.append("--model-control-mode=explicit")
    argv += [f"--load-model={name}" for name in models]
    return argv


def has_gpu() -> bool:
    """True where the NVIDIA driver is loaded (its control device exists)."""
    return Path("/dev/nvidiactl").exists()


CPU_NOTE = (
    "triton: no NVIDIA GPU here, the models run on CPU. The one error line "
    '"CudaDriverHelper has not been initialized." that follows is harmless.'
)


# No proxy: an http_proxy in the environment must not swallow loopback checks.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_ready(http_port: int, host: str = "127.0.0.1") -> bool:
    """True once the server and every loaded model are ready (strict readiness)."""
    try:
        with _DIRECT.open(f"http://{host}:{http_port}/v2/health/ready", timeout=1) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def triton_process(
    http_port: int,
    grpc_port: int,
    metrics_port: int | None = None,
    *,
    model_repository: Path = MODEL_REPOSITORY,
    models: Sequence[str] | None = None,
    log_dir: Path | None = None,
    name: str = "triton",
    ready_timeout: float = 60.0,
) -> ManagedProcess:
    """A not-yet-started Triton; ``start()`` returns once /v2/health/ready is 200."""
    return ManagedProcess(
        name,
        server_argv(
            http_port, grpc_port, metrics_port, model_repository=model_repository, models=models
        ),
        env=server_env(),
        log_dir=log_dir,
        ready=lambda: http_ready(http_port),
        ready_timeout=ready_timeout,
    )


def main() -> None:
    settings = InfraSettings.from_env()
    argv = server_argv(
        settings.triton_http_port,
        settings.triton_grpc_port,
        settings.triton_metrics_port,
        model_repository=settings.triton_model_repository,
    )
    env = {**environ(), **server_env()}
    if not has_gpu():
        print(CPU_NOTE, flush=True)
    sys.stdout.flush()
    os.execve(argv[0], argv, env)


if __name__ == "__main__":
    main()
