"""Stage 1 building blocks: speech Q-Former, projection into a frozen causal LM, prompt templates."""
