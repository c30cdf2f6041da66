"""TiffSink: axes to files, calibration, options, names and text."""
