"""IJTiffFile: saving, keep_up, the budget, buffers, interrupts, its life cycle."""
