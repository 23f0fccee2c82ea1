"""cinecomp: composite green-screen character plates into new environments, shot by shot."""

__version__ = "0.1.0"
SOFTWARE = f"cinecomp {__version__}"
