"""Our GGUF files, read by the reference `gguf` Python package (gguf-py, the reader llama.cpp ships).

The package is independent of sail-edge: if it reads our files and its dequantization gives back the
checkpoint's values, any GGUF consumer will. Run with pytest; SAIL_EDGE_BIN names the binary
(default: target/release/sail-edge, then target/debug/sail-edge).
"""

import json
import os
import struct
import subprocess
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader, GGMLQuantizationType
from gguf.quants import dequantize, quantize

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT.parent / "shared" / "fixtures"


def binary() -> Path:
    env = os.environ.get("SAIL_EDGE_BIN")
    if env:
        return Path(env)
    for profile in ("release", "debug"):
        p = ROOT / "target" / profile / "sail-edge"
        if p.exists():
            return p
    pytest.fail("build sail-edge first (cargo build --release) or set SAIL_EDGE_BIN")


def read_checkpoint(folder: Path) -> dict:
    """bf16/f16/f32 safetensors shards → {name: float32 array}, parsed by hand (no torch needed)."""
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    out = {}
    for shard in sorted(set(index["weight_map"].values())):
        raw = (folder / shard).read_bytes()
        (n,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8 : 8 + n])
        base = 8 + n
        for name, info in header.items():
            if name == "__metadata__":
                continue
            a, b = info["data_offsets"]
            buf = raw[base + a : base + b]
            if info["dtype"] == "BF16":
                bits = np.frombuffer(buf, dtype=np.uint16).astype(np.uint32) << 16
                values = bits.view(np.float32)
            elif info["dtype"] == "F16":
                values = np.frombuffer(buf, dtype=np.float16).astype(np.float32)
            else:
                values = np.frombuffer(buf, dtype=np.float32)
            out[name] = values.reshape(info["shape"])
    return out


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Convert both fixtures at f32, f16, q8_0 and q4_k_m once."""
    out = tmp_path_factory.mktemp("converted")
    files = {}
    for fixture in ("sailvl2-tiny", "sailvl2-moe-tiny"):
        for mix in ("f32", "f16", "q8_0", "q4_k_m"):
            lm = out / f"{fixture}-{mix}.gguf"
            mm = out / f"mmproj-{fixture}-{mix}.gguf"
            subprocess.run(
                [str(binary()), "convert", str(FIXTURES / fixture), "--type", mix, "-o", str(lm), "--mmproj", str(mm)],
                check=True,
                capture_output=True,
            )
            files[(fixture, mix)] = (lm, mm)
    return files


@pytest.fixture(scope="module")
def checkpoints():
    return {f: read_checkpoint(FIXTURES / f) for f in ("sailvl2-tiny", "sailvl2-moe-tiny")}


# Our GGUF names → checkpoint names for a few tensors of each kind (LM names follow llama.cpp).
LM_PAIRS = {
    "token_embd.weight": "language_model.model.embed_tokens.weight",
    "blk.0.attn_q.weight": "language_model.model.layers.0.self_attn.q_proj.weight",
    "blk.2.attn_v.weight": "language_model.model.layers.2.self_attn.v_proj.weight",
    "blk.1.attn_q_norm.weight": "language_model.model.layers.1.self_attn.q_norm.weight",
    "output_norm.weight": "language_model.model.norm.weight",
}
DENSE_PAIRS = {"blk.1.ffn_down.weight": "language_model.model.layers.1.mlp.down_proj.weight"}
VISION_PAIRS = {
    "v.patch_embd.weight": "vision_model.preprocessor.patchifier.proj.weight",
    "v.position_embd.weight": "vision_model.preprocessor.pos_embed",
    "v.blk.0.attn_qkv.weight": "vision_model.trunk.blocks.0.attn.qkv.weight",
    "v.blk.1.ffn_down.weight": "vision_model.trunk.blocks.1.mlp.fc2.weight",
    "mm.1.weight": "mlp1.1.weight",
    "mm.0.bias": "mlp1.0.bias",
}


@lru_cache(maxsize=None)
def open_gguf(path: Path) -> GGUFReader:
    """Parsing the 150k-entry tokenizer arrays takes seconds in Python: open each file once."""
    return GGUFReader(path)


def tensors(reader: GGUFReader) -> dict:
    return {t.name: t for t in reader.tensors}


def values(t) -> np.ndarray:
    """Dequantize with gguf-py and reshape to PyTorch order (ggml dims reversed)."""
    deq = dequantize(t.data, t.tensor_type)
    return np.asarray(deq, dtype=np.float32).reshape([int(d) for d in reversed(t.shape)])


def expected(ckpt: dict, hf: str) -> np.ndarray:
    a = ckpt[hf]
    return a.reshape(a.shape[1:]) if a.ndim == 3 and a.shape[0] == 1 else a


@pytest.mark.parametrize("fixture", ["sailvl2-tiny", "sailvl2-moe-tiny"])
def test_f32_values_are_exact(converted, checkpoints, fixture):
    lm, mm = converted[(fixture, "f32")]
    pairs = [(lm, LM_PAIRS), (mm, VISION_PAIRS)]
    if fixture == "sailvl2-tiny":
        pairs.append((lm, DENSE_PAIRS))
    for path, table in pairs:
        ts = tensors(open_gguf(path))
        for ours, hf in table.items():
            got = values(ts[ours])
            want = expected(checkpoints[fixture], hf)
            assert got.shape == want.shape, ours
            # bf16 → f32 is a widening: exact.
            assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), ours


def test_moe_experts_are_stacked_in_order(converted, checkpoints):
    lm, _ = converted[("sailvl2-moe-tiny", "f32")]
    ts = tensors(open_gguf(lm))
    ckpt = checkpoints["sailvl2-moe-tiny"]
    for proj, ours in (("gate", "ffn_gate_exps"), ("up", "ffn_up_exps"), ("down", "ffn_down_exps")):
        got = values(ts[f"blk.1.{ours}.weight"])
        for e in range(8):
            want = ckpt[f"language_model.model.layers.1.mlp.experts.{e}.{proj}_proj.weight"]
            assert np.array_equal(got[e], want), (ours, e)
    router = values(ts["blk.1.ffn_gate_inp.weight"])
    assert np.array_equal(router, ckpt["language_model.model.layers.1.mlp.gate.weight"])


@pytest.mark.parametrize("fixture", ["sailvl2-tiny", "sailvl2-moe-tiny"])
def test_f16_is_round_to_nearest_of_the_checkpoint(converted, checkpoints, fixture):
    lm, mm = converted[(fixture, "f16")]
    for path, table in ((lm, LM_PAIRS), (mm, VISION_PAIRS)):
        ts = tensors(open_gguf(path))
        for ours, hf in table.items():
            t = ts[ours]
            want = expected(checkpoints[fixture], hf)
            if t.tensor_type == GGMLQuantizationType.F32:  # norms, biases, position embedding stay f32
                assert np.array_equal(values(t), want), ours
            else:
                assert t.tensor_type == GGMLQuantizationType.F16, ours
                assert np.array_equal(values(t), want.astype(np.float16).astype(np.float32)), ours


@pytest.mark.parametrize("fixture", ["sailvl2-tiny", "sailvl2-moe-tiny"])
def test_q8_0_bytes_equal_gguf_py_quantizer(converted, checkpoints, fixture):
    lm, mm = converted[(fixture, "q8_0")]
    for path, table in ((lm, LM_PAIRS), (mm, VISION_PAIRS)):
        ts = tensors(open_gguf(path))
        for ours, hf in table.items():
            t = ts[ours]
            if t.tensor_type != GGMLQuantizationType.Q8_0:
                continue
            want = expected(checkpoints[fixture], hf)
            ref = quantize(want.reshape(-1, want.shape[-1]), GGMLQuantizationType.Q8_0)
            assert np.array_equal(np.asarray(t.data).reshape(-1), ref.reshape(-1)), ours


@pytest.mark.parametrize("fixture", ["sailvl2-tiny", "sailvl2-moe-tiny"])
def test_q4_k_m_files_read_and_dequantize_close(converted, checkpoints, fixture):
    lm, mm = converted[(fixture, "q4_k_m")]
    for path, table in ((lm, LM_PAIRS), (mm, VISION_PAIRS)):
        ts = tensors(open_gguf(path))
        for ours, hf in table.items():
            t = ts[ours]
            got = values(t)
            want = expected(checkpoints[fixture], hf)
            assert got.shape == want.shape, ours
            # Worst error per block type. Q4_0/Q5_0 put the largest-magnitude value at -8d / -16d and clip the
            # other end at +7d / +15d, so values there can be a full step off (d = amax/8, amax/16); Q5_1 and
            # Q8_0 round to the nearest level: half a step ((max - min)/62 <= amax/31, amax/254); f16 rounds
            # to 2^-11 relative. Plus the fp16 rounding of the block scale: at most amax * 2^-11. F32 is exact.
            rows = want.reshape(-1, 32) if want.shape[-1] % 32 == 0 else want.reshape(1, -1)
            kind = t.tensor_type.name
            if kind == "F32":
                assert np.array_equal(got, want), ours
                continue
            worst = {"Q4_0": 8, "Q5_0": 16, "Q5_1": 31, "Q8_0": 254, "F16": 2048}[kind]
            amax = np.abs(rows).max(axis=1, keepdims=True)
            bound = amax / worst + amax * 2.0**-11 + 1e-7
            err = np.abs(got.reshape(rows.shape) - rows)
            assert (err <= bound).all(), (ours, t.tensor_type.name, float((err - bound).max()))


def test_mmproj_metadata_is_readable(converted):
    _, mm = converted[("sailvl2-tiny", "q8_0")]
    r = open_gguf(mm)
    f = r.fields
    assert f["general.architecture"].contents() == "clip"
    assert f["clip.vision.image_size"].contents() == 448
    assert f["sailvl2.image_context_token_id"].contents() == 151671
    assert abs(f["clip.vision.image_std"].contents()[2] - 0.225) < 1e-7
    assert f["sailvl2.system_prompt"].contents().startswith("你是由抖音内容理解组开发的多模态大模型")
