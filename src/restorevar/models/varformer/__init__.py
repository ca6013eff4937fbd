"""VarFormer (CVPR 2025, "Navigating Image Restoration with VAR's Distribution Alignment Prior"): a frozen VAR's
multi-scale token features guide a non-generative restoration U-Net at full resolution. One file per component."""
