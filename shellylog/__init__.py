"""shellylog: a minute-by-minute CSV log of Shelly switch channel power."""

from importlib.metadata import PackageNotFoundError, version

try:
    # The one version number is pyproject.toml's; installing puts it in the metadata.
    __version__: str = version("shellylog")
except PackageNotFoundError:  # imported from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
