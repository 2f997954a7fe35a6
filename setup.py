"""Packaging for repro. Tool configuration (pytest, mypy, ruff) lives in pyproject.toml."""

from setuptools import find_packages, setup

setup(
    name="repro",
    version="0.1.0",
    description="Run a pinned (Guix) build on many hosts over SSH and compare the bytes.",
    python_requires=">=3.11",
    license="MIT",
    license_files=["LICENSE"],
    packages=find_packages(include=["repro", "repro.*"]),
    package_data={"repro": ["py.typed"]},
    install_requires=[
        "asyncssh>=2.15",  # the floor `make test-floor` runs the transport tests on
        "fabric>=3.2",
        "paramiko>=3.4",
        "tabulate>=0.9",
        "pyyaml>=6.0",
        "jinja2>=3.1",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "mypy>=1.8",
            "types-PyYAML",
            "types-tabulate",
            "types-paramiko",
            # the differential tests compare `repro inventory` with Ansible's own reading
            "ansible-core>=2.16",
        ],
    },
    entry_points={"console_scripts": ["repro = repro.cli:main_entry"]},
)
