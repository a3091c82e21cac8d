#!/usr/bin/python3
"""tools/reference/torch_model.py — the PyTorch reference for nn/ (parity tests).

An independent, plain-torch implementation of the two base models of nn/gpt.h
(GPT-2 and the bidirectional encoder), in the style of nanoGPT's model.py but
with Hugging Face GPT-2's parameter names and Conv1D layout (weights [in, out]).
It loads a model directory written by tinyadapt (config.json +
model.safetensors), runs one batch, back-propagates the loss and writes

    logits            (B, T, V)   of the text positions
    loss              ()          mean cross-entropy, targets -100 ignored
    grad.<parameter>              every parameter's gradient
    grad.input_prefix, grad.prefix_keys.<i>, grad.prefix_values.<i>
                                  gradients of the optional prefixes

The batch file holds ids and targets (B, T) as floats, and optionally
padding_mask (B, T) (1 = real token), input_prefix (k, C) and per-layer
prefix_keys.<i> / prefix_values.<i> (P, C). Position semantics are Hugging
Face's: with an attention prefix of length P (a "past"), positions start at P;
input-prefix rows take the first positions after it (PEFT prompt tuning).

Everything runs in float64, so the reference is more exact than the float32
code it checks. The safetensors reader/writer is inlined (struct + json)
because the safetensors package is not installed with Debian's python3-torch.

With --adamw-steps N --lr LR it then trains on the same batch for N steps of
torch.optim.AdamW (betas 0.9/0.95, eps 1e-8, weight decay 0.1 on the matrices
of matmuls only, as nanoGPT) and also writes losses (N,), the loss before each
step: the first-steps regression of llm.c's test_gpt2.c.

usage: torch_model.py MODEL_DIR BATCH.safetensors OUT.safetensors [--adamw-steps N --lr LR]
"""
import json
import math
import struct
import sys

import torch
import torch.nn.functional as F

DTYPES = {"F32": (torch.float32, 4), "F64": (torch.float64, 8)}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_len])
    base = 8 + header_len
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype, _ = DTYPES[info["dtype"]]
        begin, end = info["data_offsets"]
        flat = torch.frombuffer(bytearray(data[base + begin:base + end]), dtype=dtype)
        tensors[name] = flat.reshape(info["shape"]).to(torch.float64)
    return tensors


def write_safetensors(path, tensors):
    header, chunks, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(tensors):
        raw = tensors[name].detach().to(torch.float32).contiguous().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


def gelu_tanh(x):  # GPT-2's "gelu_new"
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


class Model:
    """GPT-2 / the encoder as functions of a dict of named parameters."""

    def __init__(self, config, params):
        self.c = config
        self.p = {k[len("transformer."):] if k.startswith("transformer.") else k: v for k, v in params.items()}

    def linear(self, name, x):
        return x @ self.p[name + ".weight"] + self.p[name + ".bias"]

    def layernorm(self, name, x):
        return F.layer_norm(x, x.shape[-1:], self.p[name + ".weight"], self.p[name + ".bias"],
                            self.c["layer_norm_epsilon"])

    def attention(self, i, x, key_mask, prefix):
        B, T, C = x.shape
        H = self.c["n_head"]
        q, k, v = self.linear(f"h.{i}.attn.c_attn", x).split(C, dim=2)
        if prefix is not None:
            P = prefix[0].shape[0]
            k = torch.cat([prefix[0].expand(B, P, C), k], dim=1)
            v = torch.cat([prefix[1].expand(B, P, C), v], dim=1)
        S = k.shape[1]
        heads = lambda t: t.view(B, t.shape[1], H, C // H).transpose(1, 2)  # (B,H,len,hs)
        att = heads(q) @ heads(k).transpose(-2, -1) / math.sqrt(C // H)  # (B,H,T,S)
        allowed = key_mask.view(B, 1, 1, S).bool().expand(B, 1, T, S)
        if self.c.get("is_causal", True):  # own keys causal, prefix keys always visible
            own = torch.tril(torch.ones(T, T, dtype=torch.bool))
            causal = torch.cat([torch.ones(T, S - T, dtype=torch.bool), own], dim=1)
            allowed = allowed & causal.view(1, 1, T, S)
        att = att.masked_fill(~allowed, float("-inf")).softmax(dim=-1)
        y = (att @ heads(v)).transpose(1, 2).reshape(B, T, C)
        return self.linear(f"h.{i}.attn.c_proj", y)

    def forward(self, ids, padding_mask, input_prefix, prefixes):
        B, T = ids.shape
        P = prefixes[0][0].shape[0] if prefixes else 0
        x = self.p["wte.weight"][ids]
        if input_prefix is not None:
            x = torch.cat([input_prefix.expand(B, *input_prefix.shape), x], dim=1)
        L = x.shape[1]  # k + T
        x = x + self.p["wpe.weight"][P:P + L]
        key_mask = torch.cat([torch.ones(B, P + L - T, dtype=torch.float64), padding_mask], dim=1)
        for i in range(self.c["n_layer"]):
            x = x + self.attention(i, self.layernorm(f"h.{i}.ln_1", x), key_mask, prefixes[i] if prefixes else None)
            x = x + self.linear(f"h.{i}.mlp.c_proj", gelu_tanh(self.linear(f"h.{i}.mlp.c_fc", self.layernorm(f"h.{i}.ln_2", x))))
        hidden = self.layernorm("ln_f", x)[:, L - T:]  # the text rows
        return hidden @ self.p["wte.weight"].T  # tied LM head


def adamw_losses(params, batch_loss, steps, lr):
    decay = [p for k, p in params.items() if p.dim() == 2 and not k.endswith(("wte.weight", "wpe.weight"))]
    no_decay = [p for p in params.values() if all(p is not q for q in decay)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=lr, betas=(0.9, 0.95), eps=1e-8)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = batch_loss()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return torch.tensor(losses)


def main(model_dir, batch_path, out_path, *options):
    torch.set_default_dtype(torch.float64)
    with open(model_dir + "/config.json") as f:
        config = json.load(f)
    params = read_safetensors(model_dir + "/model.safetensors")
    for p in params.values():
        p.requires_grad_(True)
    batch = read_safetensors(batch_path)
    ids, targets = batch["ids"].long(), batch["targets"].long()
    padding_mask = batch.get("padding_mask", torch.ones(ids.shape))
    extras = {k: v.requires_grad_(True) for k, v in batch.items() if k.startswith(("input_prefix", "prefix_"))}
    n_layer = config["n_layer"]
    prefixes = ([(extras[f"prefix_keys.{i}"], extras[f"prefix_values.{i}"]) for i in range(n_layer)]
                if "prefix_keys.0" in extras else None)

    def batch_loss():
        logits = Model(config, params).forward(ids, padding_mask, extras.get("input_prefix"), prefixes)
        return logits, F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)

    logits, loss = batch_loss()
    loss.backward()
    out = {"logits": logits, "loss": loss}
    out.update({"grad." + k: v.grad.clone() for k, v in list(params.items()) + list(extras.items())})
    if options:
        steps, lr = int(options[1]), float(options[3])
        out["losses"] = adamw_losses(params, lambda: batch_loss()[1], steps, lr)
    write_safetensors(out_path, out)


if __name__ == "__main__":
    if len(sys.argv) not in (4, 8) or (len(sys.argv) == 8 and sys.argv[4::2] != ["--adamw-steps", "--lr"]):
        sys.exit(__doc__.strip().splitlines()[-1])
    main(*sys.argv[1:])
