"""repro's reading of Ansible inventories against ansible-core's own, on the same files:
`repro inventory --list` vs `ansible-inventory --list`, Jinja values vs `ansible -m debug`, and
`--inventory-via ansible` with a script inventory and a `constructed` one.

ansible-core comes with the `[test]` extra; CI (REPRO_REQUIRE_ANSIBLE=1) fails without it.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from repro.ansible_inventory import ansible_inventory_command
from repro.cli import main
from repro.inventory import load_inventory


def _ansible_bin(name: str) -> str:
    inventory = ansible_inventory_command()
    if inventory is None:
        if os.environ.get("REPRO_REQUIRE_ANSIBLE") == "1":
            pytest.fail("REPRO_REQUIRE_ANSIBLE=1 but ansible-core is not installed")
        pytest.skip("ansible-core is not installed (pip install -e '.[test]')")
    return str(Path(inventory).with_name(name))


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory and HOME: no ansible.cfg, no playbook-dir group_vars."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path))
    for key in [k for k in os.environ if k.startswith("ANSIBLE_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("ANSIBLE_LOCALHOST_WARNING", "False")
    return work


def _run(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def ansible_list(inventory: Path) -> dict[str, Any]:
    data = json.loads(_run([_ansible_bin("ansible-inventory"), "-i", str(inventory), "--list"]))
    data["_meta"].pop("profile", None)
    return dict(data)


def repro_list(inventory: Path, *extra: str) -> dict[str, Any]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["inventory", "-i", str(inventory), "--list", *extra], stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    return dict(json.loads(out.getvalue()))


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if name.endswith(".py"):
            path.chmod(0o755)
    return root


INVENTORIES: dict[str, dict[str, str]] = {
    "yaml-group-host-vars": {
        "hosts.yaml": """
all:
  vars: {x: inv_all, shared: inv_all}
  children:
    prod:
      vars: {x: inv_prod, ansible_group_priority: 5}
      children:
        web:
          vars: {x: inv_web, only_web: 1}
          hosts:
            web[1:3]:
              ansible_host: 192.0.2.1
            web9:2222:
        db:
          hosts:
            db1: {x: inv_db1}
    side:
      hosts:
        web2: {side: true}
  hosts:
    lone:
""",
        "group_vars/all.yml": "x: gv_all\nshared: gv_all\n",
        "group_vars/prod/10-base.yaml": "x: gv_prod\nlist: [1, 2]\n",
        "group_vars/prod/20-more.json": '{"nested": {"a": 1}}',
        "group_vars/prod/skip.txt": "x: ignored\n",
        "group_vars/web": "only_web: from_gv_file\n",
        "group_vars/web.yml": "only_web: shadowed_by_the_plain_name\n",
        "host_vars/web2.yml": "x: hv_web2\n",
        "host_vars/db1/a.yml": "x: hv_db1\nmore: yes\n",
    },
    "ini": {
        "hosts.ini": """# an INI inventory
lonely ansible_port=2200 flag=True n=5 s="a b" l="[1,2]" d="{'k': 1}" f=1.5 t=x#y
[web]
web[01:03] ansible_host=10.0.0.1  # trailing comment
web9:2222
[db]
db1
[web:vars]
x=1
y="quoted"
sp = spaced value
raw=some text
[prod:children]
web
db
[prod:vars]
x=prod
[all:vars]
everyone=yes
""",
        "group_vars/prod.yaml": "z: gv_prod\n",
        "host_vars/db1": "x: hv\n",
    },
    "directory": {
        "inv/01-base.yaml": "web:\n  hosts:\n    web1: {a: 1}\n    web2:\n",
        "inv/02-more.ini": "[db]\ndb1 a=2\n[web]\nweb3\n[web:vars]\nfrom_ini=1\n",
        "inv/notes.md": "# not an inventory\n",
        "inv/old.bak": "[ignored]\nnope\n",
        "inv/group_vars/web.yml": "tier: front\n",
        "inv/host_vars/db1.yaml": "a: 3\n",
    },
}


@pytest.mark.parametrize("name", sorted(INVENTORIES))
def test_list_matches_ansible_inventory(tmp_path: Path, sandbox: Path, name: str) -> None:
    root = write(tmp_path / "src", INVENTORIES[name])
    source = next(p for p in (root / "hosts.yaml", root / "hosts.ini", root / "inv") if p.exists())
    assert repro_list(source) == ansible_list(source)


def test_the_example_inventory_matches_ansible_inventory(sandbox: Path) -> None:
    example = Path(__file__).resolve().parent.parent / "inventory.yaml"
    assert repro_list(example) == ansible_list(example)


def test_jinja_values_match_ansible_debug(tmp_path: Path, sandbox: Path) -> None:
    root = write(
        tmp_path / "src",
        {
            "hosts.yaml": """
all:
  vars:
    base: /srv
    path: "{{ base }}/build"
    port_base: 2200
  hosts:
    h1:
      ansible_user: "{{ who }}"
      who: alice
      port: "{{ port_base + 2 }}"
      joined: "{{ port_base }}{{ port_base }}"
      as_list: "{{ [1, port_base] }}"
      fallback: "{{ nothing_here | default('dflt') }}"
      cond: "{% if port_base > 1 %}big{% else %}small{% endif %}"
      nested: {a: "{{ port_base + 1 }}", b: ["{{ base | upper }}"]}
""",
            "host_vars/h1.yml": "base: /opt\n",
        },
    )
    inventory = root / "hosts.yaml"
    host = load_inventory(inventory).hosts["h1"]
    ansible = _ansible_bin("ansible")
    for name in ("path", "ansible_user", "port", "joined", "as_list", "fallback", "cond", "nested"):
        out = _run([ansible, "h1", "-i", str(inventory), "-c", "local", "-m", "debug",
                    "-a", f"var={name}"])  # fmt: skip
        theirs = json.loads(out.split("=>", 1)[1])[name]
        assert host.vars[name] == theirs, name


def test_via_ansible_with_a_script_inventory(tmp_path: Path, sandbox: Path) -> None:
    script = {
        "web": {"hosts": ["s1", "s2"], "vars": {"tier": "front"}},
        "_meta": {"hostvars": {"s1": {"ansible_host": "192.0.2.7", "ansible_port": 2201}}},
    }
    root = write(
        tmp_path / "src",
        {
            "dyn.py": f"#!{sys.executable}\nimport json, sys\n"
            f"print(json.dumps({script!r} if '--list' in sys.argv else {{}}))\n"
        },
    )
    # automatic (an executable is a script inventory) and explicit give the same
    for argv in ((), ("--inventory-via", "ansible")):
        data = repro_list(root / "dyn.py", *argv)
        assert data == ansible_list(root / "dyn.py")
    inv = load_inventory(root / "dyn.py")
    s1 = inv.hosts["s1"]
    assert (s1.address, s1.port, s1.vars["tier"]) == ("192.0.2.7", 2201, "front")
    assert inv.groups["web"] == ("s1", "s2")
    with pytest.raises(Exception, match="executable"):
        load_inventory(root / "dyn.py", via="builtin")


def test_via_ansible_with_a_constructed_inventory(tmp_path: Path, sandbox: Path) -> None:
    root = write(
        tmp_path / "src",
        {
            "inv/01-static.yaml": "all:\n  hosts:\n    big: {cores: 64, arch: zen4}\n"
            "    small: {cores: 4, arch: skylake}\n",
            "inv/02-constructed.yml": "plugin: ansible.builtin.constructed\nstrict: true\n"
            "groups:\n  fast: cores > 8\nkeyed_groups:\n  - key: arch\n    prefix: arch\n"
            "compose:\n  repro_work_dir: \"'/scratch/' ~ arch\"\n",
        },
    )
    inv = load_inventory(root / "inv")  # a plugin config in the directory: Ansible reads all
    assert inv.groups["fast"] == ("big",)
    assert inv.groups["arch_skylake"] == ("small",)
    assert inv.hosts["small"].vars["repro_work_dir"] == "/scratch/skylake"
    assert repro_list(root / "inv") == ansible_list(root / "inv")


def test_several_sources_match_ansible_inventory(tmp_path: Path, sandbox: Path) -> None:
    root = write(
        tmp_path / "src",
        {
            "a/hosts.ini": "[web]\nw1 x=a\n[db]\nd1\n",
            "a/group_vars/web.yml": "g: a\n",
            "b/hosts.yaml": "web:\n  hosts:\n    w1: {x: b}\n    w2:\n",
            "b/host_vars/w2.yml": "h: b\n",
        },
    )
    sources = [root / "a" / "hosts.ini", root / "b" / "hosts.yaml"]
    argv = [a for s in sources for a in ("-i", str(s))]
    out = io.StringIO()
    assert main(["inventory", *argv, "--list"], stdout=out) == 0
    theirs = json.loads(_run([_ansible_bin("ansible-inventory"), *argv, "--list"]))
    theirs["_meta"].pop("profile", None)
    assert json.loads(out.getvalue()) == theirs
