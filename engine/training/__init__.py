"""The engine process that trains one run: model loading, the methods (sft, dpo, kto, reward, grpo, rloo,
classification), the Trainer callback that writes the run directory, multi-process ranks, several nodes (cluster) and fault injection.
Heavy: imports torch, transformers, peft, trl, datasets (only engine processes and the helper import it);
metrics alone is light (numpy), shared with the checkpoint comparison."""
