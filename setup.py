"""The package list: every ``digest`` package, plus the top-level ``templates/`` folder
installed as ``digest/templates`` (package data, found with importlib.resources wherever
digest is installed). Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["digest", "digest.*"]),
        "digest.skeleton",  # data folders are packages to setuptools: named, or it warns
        "digest.templates",
        "digest.templates.web",
    ],
    package_dir={"digest.templates": "templates"},
)
