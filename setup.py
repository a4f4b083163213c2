"""Package discovery only (metadata is in pyproject.toml).

``operator/`` installs under the import name ``detector_operator``: a top-level package literally
named ``operator`` would shadow the standard library.
"""

from setuptools import find_packages, setup

OPERATOR_DIR = "operator"
OPERATOR_PACKAGE = "detector_operator"

apps = find_packages(include=["camera_pod", "camera_pod.*", "broker", "broker.*", "detector", "detector.*"])
operator = [OPERATOR_PACKAGE] + [f"{OPERATOR_PACKAGE}.{name}" for name in find_packages(OPERATOR_DIR)]

# The broker's console (HTML, JS, CSS) is served from the installed package: an image built with
# `pip install .` serves it as a checkout does.
setup(packages=apps + operator, package_dir={OPERATOR_PACKAGE: OPERATOR_DIR},
      package_data={"broker.console_assets": ["*.html", "*.js", "*.css"]})
