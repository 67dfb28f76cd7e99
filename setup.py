"""The package list: every ``digest`` package, plus the top-level ``templates/`` folder
installed as ``digest/templates`` (package data, found with importlib.resources wherever
digest is installed). Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["digest", "digest.*"]), "digest.templates"],
    package_dir={"digest.templates": "templates"},
)
