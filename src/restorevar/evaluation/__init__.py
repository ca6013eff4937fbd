"""Metrics (PSNR, SSIM, NIQE, ...), paired evaluation, reports, analysis, classical baselines, benchmarks."""
