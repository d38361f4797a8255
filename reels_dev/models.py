"""Model operations on a running Triton: see what serves, go live with a new version,
roll back, unload. No restart of Triton or of any service.

    python -m reels_dev.models status
    python -m reels_dev.models load ranker [--version N] [--dynamic-batching on|off]
    python -m reels_dev.models rollback ranker --to N
    python -m reels_dev.models unload ranker

Triton runs in explicit model-control mode (reels_dev/infra/triton.py) on a versioned
repository (``models/repository/<model>/<N>/``). ``load`` sends Triton's load RPC with
the repository's config.pbtxt as a config override in which only the version policy
(and, if asked, dynamic batching) is set: ``latest: {num_versions: 1}`` without
``--version`` (the newest directory), ``specific: [N]`` with it. Triton loads the new
version while the old one keeps answering, then unloads the old one; clients that ask
for version "" (reels/model_client.py, svc_rank's ranker) never see a gap. Always
sending the override matters: a plain load RPC of an already loaded model whose files
look unchanged is a no-op in Triton, so after a rollback a plain load would stay on
the rolled-back version.

A version that fails to load (a corrupt model.onnx, an exception in initialize) leaves
the previous version serving; the load RPC fails, and Triton's repository index keeps
the version's state (UNAVAILABLE) and its reason, which ``status`` and ``make status``
print. The command exits 1 then.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tritonclient.grpc as triton_grpc
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException

from reels_dev.infra.triton import repository_models
from reels_dev.settings import InfraSettings


@dataclass(frozen=True, slots=True)
class VersionState:
    """One row of Triton's repository index: a model version and its state."""

    model: str
    version: str
    state: str  # READY, LOADING, UNLOADING, UNAVAILABLE ("" if never loaded)
    reason: str = ""

    def line(self) -> str:
        reason = self.reason.strip().splitlines()[0] if self.reason.strip() else ""
        version = f" v{self.version}" if self.version else ""
        return f"{self.model}{version}: {self.state or 'not loaded'}" + (
            f" ({reason})" if reason else ""
        )


class LoadFailed(RuntimeError):
    """Triton refused a load; the previous version (if any) still serves."""

    def __init__(self, model: str, message: str, states: Sequence[VersionState]) -> None:
        super().__init__(f"load of {model} failed: {message}")
        self.model = model
        self.states = list(states)


def index_states(entries: Sequence[dict[str, Any]]) -> list[VersionState]:
    """Repository-index entries (Triton's JSON: name, version, state, reason) as rows,
    by model then version number."""
    rows = [
        VersionState(
            str(e.get("name", "")),
            str(e.get("version", "")),
            str(e.get("state", "")),
            str(e.get("reason", "")),
        )
        for e in entries
    ]
    return sorted(rows, key=lambda r: (r.model, int(r.version) if r.version.isdigit() else -1))


def summarize(states: Sequence[VersionState]) -> str:
    """One line for ``make status``: what serves, and every version that failed (why).
    Versions merely unloaded (reason "unloaded") are left out."""
    parts = []
    for s in states:
        if s.state == "READY":
            parts.append(f"{s.model} v{s.version}")
        elif s.state == "UNAVAILABLE" and s.reason and s.reason.strip() != "unloaded":
            parts.append(s.line())
        elif s.state in ("LOADING", "UNLOADING"):
            parts.append(f"{s.model} v{s.version} {s.state.lower()}")
    return "; ".join(parts) if parts else "no model loaded"


def failed(states: Sequence[VersionState]) -> list[VersionState]:
    return [
        s
        for s in states
        if s.state == "UNAVAILABLE" and s.reason and s.reason.strip() != "unloaded"
    ]


def override_config(
    base: dict[str, Any], *, version: int | None = None, dynamic_batching: bool | None = None
) -> dict[str, Any]:
    """``base`` (a model config as JSON) with the version policy set: ``specific``
    [version] or, without a version, ``latest`` 1; ``dynamic_batching`` True adds the
    default batcher (when absent), False removes it, None keeps the base's."""
    cfg = json.loads(json.dumps(base))
    if version is None:
        cfg["version_policy"] = {"latest": {"num_versions": 1}}
    else:
        cfg["version_policy"] = {"specific": {"versions": [int(version)]}}
    if dynamic_batching is True:
        cfg.setdefault("dynamic_batching", {})
    elif dynamic_batching is False:
        cfg.pop("dynamic_batching", None)
    return cfg


def repository_config(repository: Path, model: str) -> dict[str, Any]:
    """The model's config.pbtxt as the JSON Triton's load RPC takes."""
    msg = text_format.Parse(
        (repository / model / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
    )
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


class Operator:
    """The operations over one Triton gRPC endpoint and its (local) repository."""

    def __init__(self, addr: str, repository: Path, *, timeout_s: float = 120.0) -> None:
        self.addr = addr
        self.repository = repository
        self.timeout_s = timeout_s
        self.client = triton_grpc.InferenceServerClient(addr)

    def close(self) -> None:
        self.client.close()

    def status(self, model: str | None = None) -> list[VersionState]:
        index = self.client.get_model_repository_index(as_json=True).get("models", [])
        states = index_states(index)
        return [s for s in states if model is None or s.model == model]

    def serving(self, model: str) -> list[str]:
        """The versions of ``model`` that are READY now."""
        return [s.version for s in self.status(model) if s.state == "READY"]

    def versions_on_disk(self, model: str) -> list[int]:
        d = self.repository / model
        return sorted(int(v.name) for v in d.iterdir() if v.is_dir() and v.name.isdigit())

    def load(
        self, model: str, *, version: int | None = None, dynamic_batching: bool | None = None
    ) -> list[VersionState]:
        """Load ``version`` (default: the newest directory) of ``model`` and unload the
        others once it is ready; returns the model's states after. Raises LoadFailed
        (with Triton's reason) when the version does not load: the previous one serves."""
        if version is not None and version not in self.versions_on_disk(model):
            raise LoadFailed(
                model,
                f"no version {version} in {self.repository / model} "
                f"(there: {self.versions_on_disk(model)})",
                self.status(model),
            )
        cfg = override_config(
            repository_config(self.repository, model),
            version=version,
            dynamic_batching=dynamic_batching,
        )
        try:
            self.client.load_model(model, config=json.dumps(cfg), client_timeout=self.timeout_s)
        except InferenceServerException as exc:
            raise LoadFailed(model, exc.message() or str(exc), self.status(model)) from exc
        return self.status(model)

    def rollback(self, model: str, to: int) -> list[VersionState]:
        """Serve the older version ``to`` again (its directory must still be there)."""
        return self.load(model, version=to)

    def unload(self, model: str) -> list[VersionState]:
        self.client.unload_model(model, client_timeout=self.timeout_s)
        return self.status(model)


def _print_states(states: Sequence[VersionState]) -> None:
    for s in states:
        print("  " + s.line())


def main(argv: Sequence[str] | None = None) -> int:
    infra = InfraSettings.from_env()
    ap = argparse.ArgumentParser(
        prog="python -m reels_dev.models",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--addr", default=f"127.0.0.1:{infra.triton_grpc_port}", help="Triton gRPC")
    ap.add_argument("--repository", type=Path, default=infra.triton_model_repository)
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="every model version Triton knows, its state and reason")
    p_load = sub.add_parser("load", help="serve the newest (or --version N) version")
    p_load.add_argument("model")
    p_load.add_argument("--version", type=int, default=None)
    p_load.add_argument("--dynamic-batching", choices=("on", "off"), default=None)
    p_back = sub.add_parser("rollback", help="serve an older version again")
    p_back.add_argument("model")
    p_back.add_argument("--to", type=int, required=True)
    p_unload = sub.add_parser("unload", help="stop serving a model")
    p_unload.add_argument("model")
    args = ap.parse_args(argv)
    if args.command != "status":
        # A name the repository does not have: one line naming the ones it has
        # (before any Triton call; a config.pbtxt read would end in a traceback).
        known = repository_models(args.repository)
        if args.model not in known:
            print(
                f"error: unknown model {args.model!r}; known models in {args.repository}: "
                f"{', '.join(known) or 'none (run scripts/models.sh)'}",
                file=sys.stderr,
            )
            return 2
    op = Operator(args.addr, args.repository)
    try:
        if args.command == "status":
            states = op.status()
            _print_states(states)
            return 1 if failed(states) else 0
        if args.command == "unload":
            _print_states(op.unload(args.model))
            return 0
        version = args.to if args.command == "rollback" else args.version
        batching = (
            None if not getattr(args, "dynamic_batching", None) else (args.dynamic_batching == "on")
        )
        states = op.load(args.model, version=version, dynamic_batching=batching)
        print(f"{args.model}: serving v{', v'.join(op.serving(args.model))}")
        _print_states(states)
        return 0
    except LoadFailed as exc:
        print(f"error: {exc}".splitlines()[0], file=sys.stderr)
        print(f"{exc.model}: still serving v{', v'.join(op.serving(exc.model)) or ' none'}")
        _print_states(exc.states)
        return 1
    except InferenceServerException as exc:
        print(f"error: Triton at {args.addr}: {exc.message()}", file=sys.stderr)
        return 2
    finally:
        op.close()


if __name__ == "__main__":
    sys.exit(main())
