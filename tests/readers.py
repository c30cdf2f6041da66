"""Reader oracles (Bio-Formats, ImageJ 1.x) as pytest fixtures."""
