"""The engines, on the demo microscope: pycro-manager and pymmcore-plus."""
