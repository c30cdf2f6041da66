"""The file profiles (bigtiff, imagej, ome) and codecs, checked by real readers."""
