"""mmtiffsink run: run files, plans, the command line."""
