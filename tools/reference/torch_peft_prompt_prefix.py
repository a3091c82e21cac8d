#!/usr/bin/python3
"""tools/reference/torch_peft_prompt_prefix.py — PEFT prompt and prefix tuning in plain torch (parity tests).

What PEFT (huggingface/peft) does for a GPT-2 causal LM, written out without
PEFT or transformers, on the base model of tools/reference/torch_model.py:

  prompt tuning   inputs_embeds = cat(prompt_embeddings (k, C), wte[ids]) with
                  Hugging Face GPT-2's default positions 0..k+T-1; PEFT's
                  training labels are cat(-100 × k, ids), so its loss also
                  scores ids[0] from the last virtual token.
  prefix tuning   the table prompt_embeddings (k, 2·L·C) is turned into
                  past_key_values as PEFT's get_prompt does: view (B, k, 2L, H, hs),
                  permute [2, 0, 3, 1, 4], split(2) -> per layer a (key, value)
                  pair of (B, H, k, hs); GPT-2 prepends the past to its keys and
                  values and, given a past of length k, puts the text at
                  positions k..k+T-1 (the causal mask shifted by k).
  prefix_projection
                  the table is PrefixEncoder's MLP of P' (k, C):
                  Linear(C, h) -> tanh -> Linear(h, 2LC); the loss runs through
                  the MLP (training mode) and the file holds the table it
                  computes, as get_prompt_embedding_to_save does.

The GPT-2 forward here takes inputs_embeds, position ids and a past in
Hugging Face's (B, H, P, hs) layout; it shares only the parameter helpers of
torch_model.py (linear, layernorm, gelu_tanh), not its prefix handling, so a
layout mistake on either side shows up.

For each case OUT_DIR/<case>/ receives a PEFT adapter directory
(adapter_config.json + adapter_model.safetensors, random values, float32),
and OUT_DIR/expected.safetensors the fixed token sequence `ids` (T) and, per
case, `<case>.loss` — the next-token loss of the text, mean cross-entropy of
the text's logits at t against ids[t+1] (what `eval-lm` reports) — and
`<case>.logits` (T, V). `prompt.peft_training_loss` is PEFT's prompt-tuning
training loss (with the virtual token's prediction of ids[0]).

Everything runs in float64 on float32-rounded inputs.

usage: torch_peft_prompt_prefix.py MODEL_DIR OUT_DIR
"""
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_model import Model, gelu_tanh, read_safetensors, write_safetensors  # noqa: E402

NUM_VIRTUAL_TOKENS = 4
TEXT_LENGTH = 9
ENCODER_HIDDEN_SIZE = 10


def gpt2_forward(model, inputs_embeds, position_ids, past_key_values=None):
    """Hugging Face GPT2LMHeadModel's forward on inputs_embeds (B, L, C); past: per layer (B,H,P,hs) pairs."""
    c, p = model.c, model.p
    B, L, C = inputs_embeds.shape
    H = c["n_head"]
    hs = C // H
    x = inputs_embeds + p["wpe.weight"][position_ids]
    for i in range(c["n_layer"]):
        q, k, v = model.linear(f"h.{i}.attn.c_attn", model.layernorm(f"h.{i}.ln_1", x)).split(C, dim=2)
        q, k, v = (t.view(B, L, H, hs).permute(0, 2, 1, 3) for t in (q, k, v))  # (B,H,L,hs)
        if past_key_values is not None:
            k = torch.cat([past_key_values[i][0], k], dim=-2)  # (B,H,P+L,hs)
            v = torch.cat([past_key_values[i][1], v], dim=-2)
        P = k.shape[-2] - L
        att = q @ k.transpose(-1, -2) / math.sqrt(hs)
        visible = torch.ones(L, P + L, dtype=torch.bool).tril(diagonal=P)  # GPT-2's bias[P:P+L, :P+L]
        att = att.masked_fill(~visible, float("-inf")).softmax(dim=-1)
        y = (att @ v).permute(0, 2, 1, 3).reshape(B, L, C)
        x = x + model.linear(f"h.{i}.attn.c_proj", y)
        hidden = gelu_tanh(model.linear(f"h.{i}.mlp.c_fc", model.layernorm(f"h.{i}.ln_2", x)))
        x = x + model.linear(f"h.{i}.mlp.c_proj", hidden)
    return model.layernorm("ln_f", x) @ p["wte.weight"].T  # (B,L,V)


def causal_lm_loss(logits, labels):
    """GPT2LMHeadModel's loss: logits at t predict labels[t+1]; -100 ignored."""
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100)


def prompt_tuning(model, prompt_embeddings, ids):
    """PeftModelForCausalLM.forward for PROMPT_TUNING: text logits, text loss, PEFT's training loss."""
    B, T = ids.shape
    k = prompt_embeddings.shape[0]
    inputs_embeds = torch.cat([prompt_embeddings.expand(B, k, -1), model.p["wte.weight"][ids]], dim=1)
    logits = gpt2_forward(model, inputs_embeds, torch.arange(k + T))
    training_labels = torch.cat([torch.full((B, k), -100), ids], dim=1)
    text_logits = logits[:, k:]
    return text_logits, causal_lm_loss(text_logits, ids), causal_lm_loss(logits, training_labels)


def prefix_past_key_values(model, table, batch_size):
    """PeftModel.get_prompt for PREFIX_TUNING: (k, 2LC) -> L pairs of (B, H, k, hs)."""
    c = model.c
    k = table.shape[0]
    H = c["n_head"]
    past = table.repeat(batch_size, 1, 1).view(batch_size, k, 2 * c["n_layer"], H, c["n_embd"] // H)
    pairs = past.permute([2, 0, 3, 1, 4]).split(2)  # L tensors (2, B, H, k, hs)
    return [(pair[0], pair[1]) for pair in pairs]


def prefix_tuning(model, table, ids):
    B, T = ids.shape
    k = table.shape[0]
    logits = gpt2_forward(model, model.p["wte.weight"][ids], torch.arange(k, k + T),
                          prefix_past_key_values(model, table, B))
    return logits, causal_lm_loss(logits, ids)


def prefix_encoder_table(prefix_input, hidden_size, width, generator):
    """PrefixEncoder with prefix_projection: Linear(C, h) -> tanh -> Linear(h, 2LC), torch's default init."""
    first = torch.nn.Linear(prefix_input.shape[1], hidden_size)
    second = torch.nn.Linear(hidden_size, width)
    for layer in (first, second):
        bound = 1.0 / math.sqrt(layer.in_features)
        with torch.no_grad():
            layer.weight.copy_(float32_rounded(torch.rand(layer.weight.shape, generator=generator) * 2 * bound - bound))
            layer.bias.copy_(float32_rounded(torch.rand(layer.bias.shape, generator=generator) * 2 * bound - bound))
    return second(torch.tanh(first(prefix_input)))


def float32_rounded(t):
    return t.to(torch.float32).to(torch.float64)


def adapter_config(config, peft_type, **fields):
    out = {"peft_type": peft_type, "task_type": "CAUSAL_LM", "num_virtual_tokens": NUM_VIRTUAL_TOKENS,
           "token_dim": config["n_embd"], "num_transformer_submodules": 1,
           "num_attention_heads": config["n_head"], "num_layers": config["n_layer"],
           "inference_mode": True, "base_model_name_or_path": None, "revision": None}
    out.update(fields)
    return out


def write_adapter(directory, config, prompt_embeddings):
    os.makedirs(directory, exist_ok=True)
    with open(directory + "/adapter_config.json", "w") as f:
        json.dump(config, f, indent=2)
    write_safetensors(directory + "/adapter_model.safetensors", {"prompt_embeddings": prompt_embeddings})


def main(model_dir, out_dir):
    torch.set_default_dtype(torch.float64)
    with open(model_dir + "/config.json") as f:
        config = json.load(f)
    model = Model(config, read_safetensors(model_dir + "/model.safetensors"))
    generator = torch.Generator().manual_seed(1234)
    C, L, k = config["n_embd"], config["n_layer"], NUM_VIRTUAL_TOKENS
    ids = torch.randint(0, config["vocab_size"], (1, TEXT_LENGTH), generator=generator)
    expected = {"ids": ids[0].to(torch.float64)}

    prompt = float32_rounded(0.5 * torch.randn(k, C, generator=generator))
    logits, loss, training_loss = prompt_tuning(model, prompt, ids)
    write_adapter(out_dir + "/prompt", adapter_config(config, "PROMPT_TUNING", prompt_tuning_init="RANDOM",
                                                      prompt_tuning_init_text=None, tokenizer_name_or_path=None), prompt)
    expected.update({"prompt.logits": logits[0], "prompt.loss": loss, "prompt.peft_training_loss": training_loss})

    table = float32_rounded(torch.randn(k, 2 * L * C, generator=generator))
    logits, loss = prefix_tuning(model, table, ids)
    write_adapter(out_dir + "/prefix", adapter_config(config, "PREFIX_TUNING", prefix_projection=False,
                                                      encoder_hidden_size=C), table)
    expected.update({"prefix.logits": logits[0], "prefix.loss": loss})

    prefix_input = float32_rounded(torch.randn(k, C, generator=generator))
    table = prefix_encoder_table(prefix_input, ENCODER_HIDDEN_SIZE, 2 * L * C, generator)
    logits, loss = prefix_tuning(model, table, ids)  # through the MLP, as in training
    write_adapter(out_dir + "/prefix_projection", adapter_config(config, "PREFIX_TUNING", prefix_projection=True,
                                                                 encoder_hidden_size=ENCODER_HIDDEN_SIZE), table)
    expected.update({"prefix_projection.logits": logits[0], "prefix_projection.loss": loss})
    write_safetensors(out_dir + "/expected.safetensors", expected)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1])
    main(*sys.argv[1:])
