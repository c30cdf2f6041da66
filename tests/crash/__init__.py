"""Crash safety: killed writers, full disks, repair, files in use."""
