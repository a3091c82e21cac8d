#!/usr/bin/python3
"""tools/reference/torch_gpt_train.py — the PyTorch peer of `make bench`.

The same measurement as `tinyadapt bench` (tools/cmd_bench.cpp), written the
way a PyTorch user would write it, so that `make bench` compares our training
step with an idiomatic one measured in the same run:

  model   GPT-2: token + learned position embeddings, pre-LN blocks (fused
          q,k,v Linear `c_attn`, causal softmax attention spelled out as
          matmul → scale → mask → softmax → matmul since PyTorch 1.13 has no
          fused attention, `c_proj`; MLP C → 4C → C with tanh GELU), final
          layer norm, LM head tied to the token embedding. Weights N(0, 0.02),
          the residual projections N(0, 0.02 / sqrt(2L)), biases 0: nn/gpt.cpp's.
  step    zero_grad + forward + cross-entropy + backward + AdamW
          (β = 0.9, 0.95, ε = 1e-8, weight decay 0.1 on matrices only), on
          random token windows (speed only; the values do not matter).
  LoRA    --lora R freezes every base parameter and adds rank-R factors to
          each layer's c_attn (all of q, k, v, as adapt/lora.cpp does on the
          fused Linear), alpha 16, B = 0: y = x W + b + (16/R) · (x Aᵀ) Bᵀ.
  prompt  --prompt K: K trainable vectors before the token embeddings, the
          base frozen (positions 0..K-1, the text after them).
  prefix  --prefix K: K trainable keys and values in every layer's attention,
          K = [P_k ; K], V = [P_v ; V], every prefix row visible; the text's
          positions start at K. With --prompt or --prefix the text is ctx - K
          tokens, as `tinyadapt bench --method prompt|prefix` does.
  bf16    --bf16 (with a method): the frozen base's matrices stored in
          torch.bfloat16 and the step run under torch.autocast("cpu",
          bfloat16), PyTorch's own mixed precision on a CPU (oneDNN's
          AVX512-BF16 kernels where the CPU has them), as `tinyadapt bench
          --bf16` stores the frozen base in bfloat16.
  timing  --warmup untimed steps, then --steps timed ones; the median step,
          tokens per second at the median, and the peak resident set size.

The model is written here, not taken from tools/reference/torch_model.py:
that one is the float64 parity reference (a plain class over a model
directory's tensors, HF's Conv1D layout), while this one is float32 nn.Modules
trained by torch.optim, as a PyTorch user's training script would be.

The last line printed is `JSON {...}` with ms_median, tok_s_median and
peak_rss_mb (what tools/bench.sh reads). Run it with Debian's interpreter,
which is where python3-torch lives, and the OMP_WAIT_POLICY bench.sh gives
both sides (ACTIVE unless the environment says otherwise: measured the faster
setting for both on a quiet machine, docs/performance.md):

    OMP_WAIT_POLICY=ACTIVE /usr/bin/python3 tools/reference/torch_gpt_train.py \\
        --vocab 256 --ctx 128 --d 128 --layers 4 --heads 4 --batch 16 --threads 2 --json
"""
import argparse
import json
import math
import resource
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class LoRALinear(nn.Module):
    """A frozen Linear plus a trainable low-rank update (Hu et al. 2021)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base = base
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))
        bound = 1.0 / math.sqrt(base.in_features)  # PEFT's default: Kaiming-uniform, a = sqrt(5)
        nn.init.uniform_(self.lora_A, -bound, bound)
        self.scale = alpha / rank

    def forward(self, x):
        return self.base(x) + (x @ self.lora_A.t()) @ self.lora_B.t() * self.scale


class Block(nn.Module):
    def __init__(self, d, heads, ctx):
        super().__init__()
        self.heads = heads
        self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.c_attn, self.attn_proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.c_fc, self.mlp_proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.register_buffer("causal", torch.tril(torch.ones(ctx, ctx, dtype=torch.bool)), persistent=False)

    def attention(self, x, prefix=None):
        B, T, C = x.shape
        hs = C // self.heads
        q, k, v = self.c_attn(x).split(C, dim=2)
        mask = self.causal[:T, :T]
        if prefix is not None:  # prefix tuning: K = [P_k ; K], V = [P_v ; V], every prefix row visible
            P = prefix[0].shape[0]
            k = torch.cat([prefix[0].expand(B, P, C), k], dim=1)
            v = torch.cat([prefix[1].expand(B, P, C), v], dim=1)
            mask = torch.cat([torch.ones(T, P, dtype=torch.bool), mask], dim=1)
        heads = lambda t: t.view(B, t.shape[1], self.heads, hs).transpose(1, 2)
        scores = (heads(q) @ heads(k).transpose(-2, -1)) / math.sqrt(hs)       # (B, H, T, P+T)
        scores = scores.masked_fill(~mask, float("-inf"))
        y = scores.softmax(dim=-1) @ heads(v)                                   # (B, H, T, hs)
        return self.attn_proj(y.transpose(1, 2).reshape(B, T, C))

    def forward(self, x, prefix=None):
        x = x + self.attention(self.ln_1(x), prefix)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, vocab, ctx, d, layers, heads):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(ctx, d)
        self.h = nn.ModuleList(Block(d, heads, ctx) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.dim() == 2:
                std = 0.02 / math.sqrt(2 * layers) if name.endswith("proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)

    def add_lora(self, rank, alpha=16.0):
        for p in self.parameters():
            p.requires_grad_(False)
        for block in self.h:
            block.c_attn = LoRALinear(block.c_attn, rank, alpha)

    def add_prompt(self, k):  # prompt tuning (Lester et al. 2021): k vectors before the tokens
        for p in self.parameters():
            p.requires_grad_(False)
        self.prompt = nn.Parameter(self.wte.weight[torch.randint(0, self.wte.num_embeddings, (k,))].clone())

    def add_prefix(self, k):  # prefix tuning (Li & Liang 2021): k keys and values in every layer
        for p in self.parameters():
            p.requires_grad_(False)
        d = self.wte.embedding_dim
        self.prefixes = nn.ParameterList(nn.Parameter(torch.randn(k, d) * 0.02) for _ in range(2 * len(self.h)))

    def loss(self, ids, targets):
        B, T = ids.shape
        x, start, k = self.wte(ids).float(), 0, 0  # .float(): a no-op unless --bf16 stored the table in bfloat16
        if hasattr(self, "prompt"):  # the prompt takes positions 0..k-1, the text k..k+T-1
            k = self.prompt.shape[0]
            x = torch.cat([self.prompt.expand(B, k, x.shape[2]), x], dim=1)
        prefixes = getattr(self, "prefixes", None)
        if prefixes is not None:  # positions after the prefix, as Hugging Face counts a past
            start = prefixes[0].shape[0]
        x = x + self.wpe(torch.arange(start, start + k + T)).float()
        for i, block in enumerate(self.h):
            x = block(x, (prefixes[2 * i], prefixes[2 * i + 1]) if prefixes is not None else None)
        logits = self.ln_f(x[:, k:]) @ self.wte.weight.t()                      # tied LM head, text rows
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in (("vocab", 256), ("ctx", 128), ("d", 128), ("layers", 4), ("heads", 4), ("batch", 16),
                          ("steps", 20), ("warmup", 3), ("threads", 2), ("lora", 0), ("prompt", 0), ("prefix", 0),
                          ("seed", 1337)):
        ap.add_argument("--" + name, type=int, default=default)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--json", action="store_true", help="end with one JSON line")
    ap.add_argument("--bf16", action="store_true", help="frozen base in bfloat16, step under autocast")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = GPT(a.vocab, a.ctx, a.d, a.layers, a.heads)
    if sum(bool(x) for x in (a.lora, a.prompt, a.prefix)) > 1:
        ap.error("--lora, --prompt and --prefix are one method each")
    if a.lora:
        model.add_lora(a.lora)
    if a.prompt:
        model.add_prompt(a.prompt)
    if a.prefix:
        model.add_prefix(a.prefix)
    if a.bf16:
        if not (a.lora or a.prompt or a.prefix):
            ap.error("--bf16 stores the frozen base: give --lora, --prompt or --prefix")
        for p in model.parameters():
            if not p.requires_grad and p.dim() == 2:
                p.data = p.data.to(torch.bfloat16)
    text = a.ctx - a.prompt - a.prefix  # the text shortened by k, as `tinyadapt bench`: the same positions per step
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in trainable if p.dim() == 2 and not n.startswith(("wte", "wpe"))]
    no_decay = [p for n, p in trainable if all(p is not q for q in decay)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=a.lr, betas=(0.9, 0.95), eps=1e-8)

    windows = torch.randint(0, a.vocab, (8, a.batch, text + 1))  # cycled
    times, losses = [], []
    for step in range(a.warmup + a.steps):
        window = windows[step % len(windows)]
        ids, targets = window[:, :-1].contiguous(), window[:, 1:].contiguous()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            loss = model.loss(ids, targets)
        loss.backward()
        optimizer.step()
        elapsed = time.perf_counter() - start
        losses.append(loss.item())
        if step >= a.warmup:
            times.append(elapsed)

    median = statistics.median(times)
    tokens = a.batch * text
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB
    result = {"vocab": a.vocab, "ctx": a.ctx, "d": a.d, "layers": a.layers, "heads": a.heads, "batch": a.batch,
              "threads": torch.get_num_threads(), "bf16": a.bf16, "lora": a.lora, "prompt": a.prompt, "prefix": a.prefix,
              "params_total": sum(p.numel() for p in model.parameters()),
              "params_trainable": sum(p.numel() for _, p in trainable), "steps": a.steps, "warmup": a.warmup,
              "ms_min": min(times) * 1e3, "ms_median": median * 1e3, "ms_mean": statistics.mean(times) * 1e3,
              "tok_s_median": tokens / median, "peak_rss_mb": peak_mb, "loss_first": losses[0],
              "loss_last": losses[-1], "torch": torch.__version__}
    print(f"PyTorch {torch.__version__}, {result['threads']} threads: {result['params_trainable']:,} of "
          f"{result['params_total']:,} parameters train; median step {median * 1e3:.1f} ms over {a.steps} "
          f"({tokens / median:,.0f} tokens/s), peak RSS {peak_mb:.0f} MiB, loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    if a.json:
        print("JSON " + json.dumps(result))


if __name__ == "__main__":
    main()
