"""Training the compositing model on curated shards (:mod:`.loop`): region-weighted flow matching, LoRA via PEFT or full fine-tuning, DeepSpeed ZeRO, periodic evaluation.

May import: diffusion, evaluate, io and the foundation modules.
"""
