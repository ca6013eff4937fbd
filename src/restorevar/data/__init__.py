"""Training and evaluation data: synthetic degradations, datasets and folder layouts, the photo sources."""
