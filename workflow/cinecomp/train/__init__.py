"""Training the compositing model on curated shards (:mod:`.loop`): region-weighted flow matching, LoRA via PEFT or full fine-tuning, DeepSpeed ZeRO, periodic evaluation; the VAE latents stored in the shards so a step need not encode them (:mod:`.latents`).

May import: diffusion, evaluate, io and the foundation modules.
"""
