"""Reference data shipped with Suanli: the accelerator catalogue, tier rules, regions.

Only locates the files; parsing belongs to the modules that own each concept.
"""

from importlib import resources
from importlib.abc import Traversable


def path(name: str) -> Traversable:
    """The packaged seed file called `name` (for example ``accelerators.csv``)."""
    return resources.files(__name__).joinpath(name)


def read_text(name: str) -> str:
    """The text of the packaged seed file called `name`."""
    return path(name).read_text(encoding="utf-8")
