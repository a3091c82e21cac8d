#!/usr/bin/python3
"""tools/reference/torch_generate.py — greedy generation with a KV cache in
plain PyTorch, the peer of `tinyadapt generate` for speed.

Loads a model directory (config.json + model.safetensors in Hugging Face
GPT-2's layout, float32), encodes nothing: it starts from the given token
ids, runs the prompt once, then one token at a time with the keys and values
of every layer kept (as transformers' generate with use_cache=True does), and
prints the generated ids and the time per token after the first, which is
what a user waiting for text sees.

With --bf16 the weight matrices are stored in torch.bfloat16 and each step
runs under torch.autocast("cpu", bfloat16), as `tinyadapt generate --bf16`
stores them.

usage: torch_generate.py MODEL_DIR --ids 464,3290,318 --max-new N [--threads T] [--bf16]
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_model import read_safetensors  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir")
    ap.add_argument("--ids", required=True)
    ap.add_argument("--max-new", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bf16", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    with open(os.path.join(a.model_dir, "config.json")) as f:
        c = json.load(f)
    p = {k[len("transformer."):] if k.startswith("transformer.") else k: v.float()
         for k, v in read_safetensors(os.path.join(a.model_dir, "model.safetensors")).items()}
    if a.bf16:
        p = {k: v.to(torch.bfloat16) if v.dim() == 2 and k != "wpe.weight" else v for k, v in p.items()}
    L, H, C, eps = c["n_layer"], c["n_head"], c["n_embd"], c["layer_norm_epsilon"]
    hs = C // H
    cache = [None] * L

    def linear(name, x):
        return torch.addmm(p[name + ".bias"], x.view(-1, x.shape[-1]), p[name + ".weight"]).view(*x.shape[:-1], -1)

    def step(ids, start):  # ids (1, T) at positions start.. -> logits of the last position
        T = ids.shape[1]
        x = p["wte.weight"][ids].float() + p["wpe.weight"][start:start + T]
        for i in range(L):
            h = F.layer_norm(x, (C,), p[f"h.{i}.ln_1.weight"], p[f"h.{i}.ln_1.bias"], eps)
            q, k, v = (t.view(1, T, H, hs).transpose(1, 2) for t in linear(f"h.{i}.attn.c_attn", h).split(C, dim=2))
            if cache[i] is not None:
                k, v = torch.cat([cache[i][0], k], dim=2), torch.cat([cache[i][1], v], dim=2)
            cache[i] = (k, v)
            att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
            if T > 1:
                att = att.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
            y = (att.softmax(dim=-1) @ v).transpose(1, 2).reshape(1, T, C)
            x = x + linear(f"h.{i}.attn.c_proj", y)
            h = F.layer_norm(x, (C,), p[f"h.{i}.ln_2.weight"], p[f"h.{i}.ln_2.bias"], eps)
            x = x + linear(f"h.{i}.mlp.c_proj", F.gelu(linear(f"h.{i}.mlp.c_fc", h), approximate="tanh"))
        x = F.layer_norm(x[:, -1], (C,), p["ln_f.weight"], p["ln_f.bias"], eps)
        return x @ p["wte.weight"].t()

    ids = torch.tensor([[int(t) for t in a.ids.split(",")]])
    out, times = [], []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
        logits = step(ids, 0)
        position = ids.shape[1]
        for _ in range(a.max_new):
            token = int(logits.argmax())
            out.append(token)
            start = time.perf_counter()
            logits = step(torch.tensor([[token]]), position)
            times.append(time.perf_counter() - start)
            position += 1
    per_token = sum(times[1:]) / max(1, len(times) - 1)
    print("ids " + ",".join(map(str, out)))
    print(f"JSON {json.dumps({'ms_per_token': per_token * 1e3, 'tokens_per_s': 1 / per_token})}")


if __name__ == "__main__":
    main()
