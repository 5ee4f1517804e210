"""Package layout only; metadata lives in pyproject.toml.

The KFP layer sits in the top-level `components/` and `pipelines/` folders (the project layout) but is
installed as `drsynth_components` and `drsynth_pipelines`, so `drsynth pipeline ...` works from anywhere.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages("src") + ["drsynth_components", "drsynth_pipelines"],
    package_dir={"": "src", "drsynth_components": "components", "drsynth_pipelines": "pipelines"},
)
