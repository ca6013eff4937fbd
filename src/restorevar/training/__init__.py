"""Training: the loop, the losses, the perceptual network and one module per stage."""
