// autograd/attention_reference.h — the plain-loop reference of ta::attention,
// for tests only.
//
// Same contract as attention() in ops.h (shapes, prefix, causality, key mask,
// rows that see no key output zeros), written as the textbook equations with
// naive loops: no BLAS, no threads, no blocking. The fused kernel is tested
// against it, forward and backward; it is far too slow for anything else.
#pragma once
#include "autograd/ops.h"

namespace ta {

Tensor attention_reference(const Tensor& qkv, const AttentionOptions& options);

}  // namespace ta
