"""RestoreVAR (ICLR 2026), as the paper has it: multi-scale residual VQVAE, next-scale transformer with
cross-attention to the degraded latent, latent refiner, fine-tuned decoder. One file per component."""
