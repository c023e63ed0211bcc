"""Optional LoRA adapter on the stage-1 language model (``model.lora_rank > 0``).

The paper (§3.3.3) keeps LLaMA-7b frozen and trains only the audio projection. A 135M-parameter LM
(SmolLM2, our default) cannot be steered that way in a CPU-sized budget: after 150 projection steps
its validation loss was still 4.0 nats/token and its texts generic English that rarely named an
emotion, while the same run with rank-8 LoRA on the attention queries and values was at 1.2 and wrote
sentences of the corpus's form (docs/stage1.md, "LoRA"). ``lora_rank=0`` is the paper's frozen LM.

:class:`LLMAdapter` injects the LoRA layers into the LM with ``peft`` (the reference implementation;
we only hold the parameters) and is a module whose ``state_dict`` is exactly those low-rank matrices,
so the checkpoint holds a few hundred kilobytes rather than the LM. Its ``forward`` runs the LM, so a
distributed (DDP) wrapper of the adapter sees every use of its parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from avitalk.errors import AvitalkError
from avitalk.instruct.causal_lm import CausalLM

__all__ = ["LLMAdapter", "LoRAWeights"]


class LLMAdapter(nn.Module):
    """Rank-``rank`` LoRA (scale ``alpha / rank``) on the ``targets`` linear layers of ``llm``'s model.

    The LM's own weights stay frozen; LoRA's second matrix starts at zero, so a new adapter leaves the
    LM unchanged. Injection mutates ``llm.model`` in place: one adapter per loaded LM.
    """

    def __init__(self, llm: CausalLM, rank: int, alpha: float, targets: Sequence[str]) -> None:
        super().__init__()
        from peft import LoraConfig, inject_adapter_in_model

        if any("lora_" in n for n, _ in llm.model.named_parameters()):
            raise AvitalkError("this language model already carries a LoRA adapter; load a fresh one")
        config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=list(targets), bias="none")
        try:
            inject_adapter_in_model(config, llm.model)
        except ValueError as e:  # no module of that name in this LM
            raise AvitalkError(f"LoRA targets {', '.join(targets)}: {e}") from None
        object.__setattr__(self, "_llm", llm)  # not a submodule: the LM's weights are not ours to save
        self.lora = nn.ParameterDict(
            {name.replace(".", "__"): p for name, p in llm.model.named_parameters() if "lora_" in name}
        )
        if not len(self.lora):
            raise AvitalkError(f"LoRA targets {', '.join(targets)} matched no layer of the language model")

    @property
    def llm(self) -> CausalLM:
        """The language model the adapter lives in."""
        return self._llm  # type: ignore[no-any-return]

    def forward(self, **kwargs: Any) -> Any:
        """The LM's forward (``inputs_embeds=..., attention_mask=..., cache=...``)."""
        return self._llm.model(**kwargs)

    @property
    def merged(self) -> bool:
        """True after :meth:`merge_into_llm`."""
        return not len(self.lora)

    def merge_into_llm(self) -> None:
        """Fold the low-rank updates into the LM's weights and put the plain layers back (inference only).

        Decoding then runs the LM alone: on 2 CPU cores the LoRA layers' small extra matmuls took ~20 %
        of a bfloat16 greedy decode. The adapter is left empty, so it cannot be saved or trained as if
        it still held its matrices (a later strict checkpoint load of it fails on the missing keys).
        """
        from peft.tuners.lora import LoraLayer

        model = self._llm.model
        for name, module in list(model.named_modules()):
            if isinstance(module, LoraLayer):
                module.merge()  # W += (alpha / r) B A, in the weights' dtype
                parent, _, child = name.rpartition(".")
                setattr(model.get_submodule(parent) if parent else model, child, module.get_base_layer())
        self.lora = nn.ParameterDict()


class LoRAWeights(nn.Module):
    """The LoRA matrices of a stage-1 checkpoint for a :class:`~avitalk.instruct.causal_lm.NativeCausalLM`.

    Same ``state_dict`` keys and shapes as :class:`LLMAdapter` (``peft``'s names of the same layers), so
    a checkpoint trained with ``transformers`` + ``peft`` loads strictly into it; then
    :meth:`merge_into_llm` folds ``W += (alpha / rank) B A`` into the LM's target layers. Inference
    only: no ``peft``, no LoRA forward.
    """

    def __init__(self, llm: CausalLM, rank: int, alpha: float, targets: Sequence[str]) -> None:
        super().__init__()
        object.__setattr__(self, "_llm", llm)
        self.scale = float(alpha) / int(rank)
        wanted = set(targets)
        params: dict[str, nn.Parameter] = {}
        self._layers: dict[str, str] = {}  # ParameterDict key prefix -> module name
        for name, module in llm.model.named_modules():
            if isinstance(module, nn.Linear) and name.rpartition(".")[2] in wanted:
                key = name.replace(".", "__")
                w = module.weight
                params[f"{key}__lora_A__default__weight"] = nn.Parameter(w.new_zeros(rank, w.shape[1]), False)
                params[f"{key}__lora_B__default__weight"] = nn.Parameter(w.new_zeros(w.shape[0], rank), False)
                self._layers[key] = name
        if not params:
            raise AvitalkError(f"LoRA targets {', '.join(targets)} matched no layer of the language model")
        self.lora = nn.ParameterDict(params)

    @property
    def llm(self) -> CausalLM:
        return self._llm  # type: ignore[no-any-return]

    def forward(self, **kwargs: Any) -> Any:
        raise AvitalkError("LoRA weights on the native LLM backend are for inference; train with 'transformers'")

    @property
    def merged(self) -> bool:
        """True after :meth:`merge_into_llm`."""
        return not len(self.lora)

    @torch.no_grad()
    def merge_into_llm(self) -> None:
        """Fold the updates into the LM's weights (float32 arithmetic) and empty this module."""
        model = self._llm.model
        for key, name in self._layers.items():
            layer = model.get_submodule(name)
            a = self.lora[f"{key}__lora_A__default__weight"].float()
            b = self.lora[f"{key}__lora_B__default__weight"].float()
            layer.weight.copy_((layer.weight.float() + self.scale * (b @ a)).to(layer.weight.dtype))
        self.lora = nn.ParameterDict()
        self._layers = {}
