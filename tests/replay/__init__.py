"""NDTiff datasets replayed into hyperstacks."""
