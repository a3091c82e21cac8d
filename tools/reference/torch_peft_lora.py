#!/usr/bin/python3
"""tools/reference/torch_peft_lora.py — a PEFT-format LoRA adapter and its loss, in plain torch.

The reference for adapt/lora.cpp (tests/test_lora_adapter.cpp). It applies
LoRA to the plain-torch GPT-2 of torch_model.py exactly as PEFT does for
Hugging Face GPT-2, whose Conv1D layers store W as [in, out] (LoraConfig
fan_in_fan_out=True):

    y = x @ W + b + scaling * lora_B(lora_A(dropout(x)))      scaling = lora_alpha / r
    lora_A.weight [r, in], lora_B.weight [out, r]             (nn.Linear layouts)
    merged:  W += transpose(lora_B.weight @ lora_A.weight) * scaling

target_modules match as PEFT matches a list: a module is adapted when its
dotted name equals a target or ends with "." + target ("c_attn" is every
layer's attn.c_attn; "h.1.attn.c_proj" one layer's).

A and B are drawn at random (both non-zero, unlike a fresh PEFT adapter whose
B is zero), so the adapter changes the model. The script writes

    ADAPTER_DIR/adapter_model.safetensors   base_model.model.transformer.h.N.<module>.lora_{A,B}.weight
    ADAPTER_DIR/adapter_config.json         LoraConfig's fields, as PEFT's save_pretrained
    OUT.safetensors                         logits (B,T,V), loss (), and merged_loss (): the
                                            loss after folding the update into W as PEFT's merge

computed in float64 from the float32 values stored in the files.

usage: torch_peft_lora.py MODEL_DIR BATCH.safetensors ADAPTER_DIR OUT.safetensors R ALPHA TARGETS SEED
       (TARGETS comma-separated, e.g. c_attn,c_fc,h.1.attn.c_proj)
"""
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_model import Model, read_safetensors, write_safetensors  # noqa: E402


def linear_names(n_layer):
    """The Conv1D layers of GPT-2, under their names without the "transformer." prefix."""
    return [f"h.{i}.{m}" for i in range(n_layer) for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")]


def matches(module_name, target):
    full = "transformer." + module_name
    return full == target or full.endswith("." + target)


class LoraModel(Model):
    """torch_model.Model with PEFT's LoRA forward on the adapted layers."""

    def __init__(self, config, params, lora, scaling):
        super().__init__(config, params)
        self.lora, self.scaling = lora, scaling

    def linear(self, name, x):
        y = super().linear(name, x)
        if name in self.lora:
            lora_A, lora_B = self.lora[name]
            y = y + (x @ lora_A.T @ lora_B.T) * self.scaling  # PEFT: lora_B(lora_A(dropout(x))) * scaling
        return y


def loss_of(logits, targets):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)


def main(model_dir, batch_path, adapter_dir, out_path, r, alpha, targets, seed):
    torch.set_default_dtype(torch.float64)
    r, alpha, targets = int(r), float(alpha), targets.split(",")
    with open(model_dir + "/config.json") as f:
        config = json.load(f)
    params = read_safetensors(model_dir + "/model.safetensors")
    batch = read_safetensors(batch_path)
    ids, targets_ids = batch["ids"].long(), batch["targets"].long()
    padding_mask = torch.ones(ids.shape)

    generator = torch.Generator().manual_seed(int(seed))
    lora, tensors = {}, {}
    for name in linear_names(config["n_layer"]):
        if not any(matches(name, t) for t in targets):
            continue
        n_in, n_out = params["transformer." + name + ".weight"].shape  # Conv1D: [in, out]
        # Rounded to float32 first, so the reference uses the values the file holds.
        lora_A = (torch.randn(r, n_in, generator=generator) / n_in ** 0.5).float().double()
        lora_B = (torch.randn(n_out, r, generator=generator) * 0.3).float().double()
        lora[name] = (lora_A, lora_B)
        key = "base_model.model.transformer." + name
        tensors[key + ".lora_A.weight"], tensors[key + ".lora_B.weight"] = lora_A, lora_B
    if not lora:
        sys.exit(f"no module matches target_modules {targets}")
    scaling = alpha / r

    logits = LoraModel(config, params, lora, scaling).forward(ids, padding_mask, None, None)
    merged = dict(params)
    for name, (lora_A, lora_B) in lora.items():  # PEFT's merge: transpose(B @ A, fan_in_fan_out) * scaling
        merged["transformer." + name + ".weight"] = params["transformer." + name + ".weight"] + (lora_B @ lora_A).T * scaling
    merged_logits = Model(config, merged).forward(ids, padding_mask, None, None)

    os.makedirs(adapter_dir, exist_ok=True)
    write_safetensors(adapter_dir + "/adapter_model.safetensors", tensors)
    adapter_config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": model_dir,
        "r": r, "lora_alpha": alpha, "lora_dropout": 0.0, "target_modules": targets,
        "fan_in_fan_out": True, "bias": "none", "init_lora_weights": True, "use_rslora": False,
        "modules_to_save": None, "inference_mode": True,
    }
    with open(adapter_dir + "/adapter_config.json", "w") as f:
        json.dump(adapter_config, f, indent=2)
    write_safetensors(out_path, {"logits": logits, "loss": loss_of(logits, targets_ids),
                                 "merged_loss": loss_of(merged_logits, targets_ids)})


if __name__ == "__main__":
    if len(sys.argv) != 9:
        sys.exit(__doc__.strip().splitlines()[-2])
    main(*sys.argv[1:])
