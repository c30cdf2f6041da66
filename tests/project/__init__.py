"""The documentation's examples and the packages."""
