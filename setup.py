"""Packaging for repro. Tool configuration (pytest, mypy, ruff) lives in pyproject.toml."""

from setuptools import find_packages, setup

setup(
    name="repro",
    version="0.1.0",
    description="Run a pinned (Guix) build on many hosts over SSH and compare the bytes.",
    python_requires=">=3.11",
    packages=find_packages(include=["repro", "repro.*"]),
    package_data={"repro": ["py.typed"], "repro.hostside": ["*.sh"]},
    install_requires=[
        "asyncssh>=2.14",
        "fabric>=3.2",
        "paramiko>=3.4",
        "tabulate>=0.9",
        "pyyaml>=6.0",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "mypy>=1.8",
            "types-PyYAML",
            "types-tabulate",
            "types-paramiko",
            # lint the CI jobs of docs/nightly.md offline (schemas vendored in the package)
            "check-jsonschema>=0.28",
        ],
    },
    entry_points={"console_scripts": ["repro = repro.cli:main_entry"]},
)
