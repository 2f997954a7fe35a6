"""Packaging for repro. Tool configuration (pytest, mypy, ruff) lives in pyproject.toml."""

from setuptools import find_packages, setup

setup(
    name="repro",
    version="0.1.0",
    description="Run a pinned (Guix) build on many hosts over SSH and compare the bytes.",
    python_requires=">=3.11",
    license="MIT",
    license_files=["LICENSE"],
    # The built-in playbooks (and the files they ship, like the demo's sources) stay in
    # playbooks/ in a checkout and are installed as repro/playbooks/: the wheel is the product,
    # and `repro demo` must work from it (repro.commands.playbooks_dir finds either).
    packages=[*find_packages(include=["repro", "repro.*"]), "repro.playbooks"],
    package_dir={"repro.playbooks": "playbooks"},
    package_data={
        "repro": ["py.typed"],
        # the POSIX sh repro runs on hosts (repro/hostside/__init__.py assembles it)
        "repro.hostside": ["*.sh"],
        "repro.playbooks": ["*.yaml", "**/*"],
    },
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
            "pytest>=8", "mypy>=1.8", "types-PyYAML", "types-tabulate", "types-paramiko",
            # tests/test_wheel.py builds the wheel offline, without build isolation
            "setuptools>=61", "wheel",
            # docs/nightly.md's CI jobs are checked offline (the package vendors the schemas)
            "check-jsonschema>=0.28",
            # the differential tests compare `repro inventory` with Ansible's own reading
            "ansible-core>=2.16",
        ],
        # where Debian's diffoscope-minimal cannot be installed; repro runs the `diffoscope`
        # on PATH either way
        "diffoscope": ["diffoscope"],
    },  # fmt: skip
    entry_points={"console_scripts": ["repro = repro.cli:main_entry"]},
)
