"""Packaging: the `clipself` package lives in projects/CLIPSelf (metadata in setup.cfg)."""
from setuptools import find_packages, setup

_SUBPACKAGES = find_packages("projects/CLIPSelf")

setup(
    package_dir={"clipself": "projects/CLIPSelf"},
    packages=["clipself"] + [f"clipself.{name}" for name in _SUBPACKAGES],
    package_data={"clipself.modeling.backbone": ["model_configs/*.json"]},
)
