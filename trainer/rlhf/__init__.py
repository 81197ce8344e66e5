"""Stage 4: learning from preferences (reward model, DPO, KTO, PPO, GRPO) and its data."""
