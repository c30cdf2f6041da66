"""info, preview and repair's messages, on our files and hostile ones."""
