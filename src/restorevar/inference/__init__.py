"""Restoring real photos with any model: any size (tiling or resizing), files and folders."""
