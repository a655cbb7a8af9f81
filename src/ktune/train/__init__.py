"""Stage 2, knowledge-tuning: LoRA on any causal LM for the query step (L_e + L_attr) and answer step (L_r)."""
