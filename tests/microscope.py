"""The demo microscope (pycro-manager headless on mm-test-adapters) as a pytest fixture."""
