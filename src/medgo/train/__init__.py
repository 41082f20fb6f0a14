"""Training: one torchrun entry for pt | sft | dpo, DeepSpeed configs, the env contract, launchers."""
