"""An n-gram draft for lossless speculative greedy decoding of instructions (:func:`.llama.generate_ids`).

Why: on a CPU, one decoding step of the 135M-parameter LM is bound by reading its weights from memory
(about 58 ms on 2 cores whether it scores 1 or 8 tokens, bench/bench_stage1.py), so a 30-40 token
instruction costs 30-40 passes. Instructions are formulaic ("... speaks with a lightly raised upper
lip and ..."), so a table of what usually follows the last few tokens guesses several tokens ahead;
the LM then scores the guess in one pass and keeps the longest prefix equal to its own arg-max
choices, plus its own next token (Leviathan et al. 2023, "prompt lookup" style drafting with a
fixed n-gram table instead of a draft model). The text is the greedy text: the draft only decides
how many tokens one pass may commit. ``transformers``' ``prompt_lookup_num_tokens`` drafts from the
prompt only, and our prompts are audio embeddings, hence this table.

    draft = NgramDraft.from_sequences([tokenizer(t) + [eos] for t in instructions], order=3)
    draft.propose([ids so far], k=8)   # -> up to 8 guessed next token ids
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

__all__ = ["NgramDraft"]


class NgramDraft:
    """Most frequent next token after each context of 1..``order`` tokens, chained to propose a draft.

    Args:
        table: context tuple -> next token id.
        order: longest context length in ``table``.
    """

    def __init__(self, table: dict[tuple[int, ...], int], order: int) -> None:
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        self.table, self.order = table, order

    @classmethod
    def from_sequences(cls, sequences: Iterable[Sequence[int]], order: int = 3) -> NgramDraft:
        """Count every (context, next) pair of the token sequences; ties go to the smaller token id."""
        counts: dict[tuple[int, ...], Counter[int]] = {}
        for seq in sequences:
            s = list(seq)
            for n in range(1, order + 1):
                for i in range(len(s) - n):
                    counts.setdefault(tuple(s[i : i + n]), Counter())[s[i + n]] += 1
        table = {ctx: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for ctx, c in counts.items()}
        return cls(table, order)

    def __len__(self) -> int:
        return len(self.table)

    def propose(self, context: Sequence[int], k: int) -> list[int]:
        """Up to ``k`` guessed tokens after ``context``: the longest known context decides each one."""
        ctx = list(context[-self.order :])
        out: list[int] = []
        while len(out) < k:
            for n in range(min(self.order, len(ctx)), 0, -1):
                nxt = self.table.get(tuple(ctx[-n:]))
                if nxt is not None:
                    break
            else:
                break
            out.append(nxt)
            ctx.append(nxt)
        return out
