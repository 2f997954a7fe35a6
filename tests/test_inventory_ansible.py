"""What a migrating Ansible user brings: INI files, inventory directories, group_vars/ and
host_vars/, Jinja in values, ssh arguments, --limit subscripts and @files, `repro inventory`.
(tests/test_inventory_differential.py checks the same against ansible-core itself.)
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from repro.cli import main
from repro.errors import InventoryError, UnknownHostError, UsageError
from repro.inventory import load_inventory, select


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def names(hosts: list) -> list[str]:
    return [h.name for h in hosts]


# --- INI and directories ----------------------------------------------------------------------


def test_ini_inventory(tmp_path: Path) -> None:
    inv = write(
        tmp_path,
        {
            "hosts": "lonely ansible_port=2200 flag=True n=5 s='a b'\n"
            "[web]\nweb[1:2] ansible_host=10.0.0.1  # comment\n"
            "[web:vars]\nx=1\n[prod:children]\nweb\n[prod:vars]\nansible_user=deploy\n"
        },
    )
    loaded = load_inventory(inv / "hosts")
    lonely, web1 = loaded.hosts["lonely"], loaded.hosts["web1"]
    assert (lonely.port, lonely.vars["flag"], lonely.vars["n"], lonely.vars["s"]) == (
        2200, True, 5, "a b"
    )  # fmt: skip
    assert lonely.groups == ("all", "ungrouped")
    assert (web1.address, web1.user, web1.vars["x"]) == ("10.0.0.1", "deploy", 1)
    assert loaded.groups["prod"] == ("web1", "web2")


@pytest.mark.parametrize(
    "text, why",
    [
        ("[web:vars]\nx=1\n", "line 1: [web:vars] is for a group defined nowhere"),
        ("[p:children]\nnope\n", "group 'nope' (children of p) is defined nowhere"),
        ("[web]\nh1 novalue\n", "line 2: expected key=value after the host name"),
        ("[web:bad]\n", "unknown type 'bad'"),
        ("[web name]\nh\n", "invalid section"),
        ("[web]\nh1 x='unclosed\n", "cannot parse host line"),
    ],
)
def test_bad_ini_is_one_line_naming_file_and_line(tmp_path: Path, text: str, why: str) -> None:
    path = write(tmp_path, {"hosts.ini": text}) / "hosts.ini"
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    assert str(info.value).startswith(f"{path}: ") and why in str(info.value)
    assert "\n" not in str(info.value)


def test_inventory_directory_mixes_yaml_and_ini(tmp_path: Path) -> None:
    inv = write(
        tmp_path / "inv",
        {
            "01-static.yaml": "web:\n  hosts:\n    web1:\n",
            "02-more.ini": "[db]\ndb1\n[web]\nweb2\n",
            "README.md": "not an inventory",
            "hosts.bak": "[x]\nignored\n",
            "group_vars/web.yaml": "tier: front\n",
        },
    )
    loaded = load_inventory(inv)
    assert list(loaded.hosts) == ["web1", "db1", "web2"]
    assert loaded.hosts["web2"].vars["tier"] == "front"
    assert "db1" not in loaded.groups["web"]


def test_host_list(tmp_path: Path) -> None:
    loaded = load_inventory("a1,b2,")
    assert list(loaded.hosts) == ["a1", "b2"] and loaded.groups["ungrouped"] == ("a1", "b2")


# --- group_vars/ and host_vars/ ---------------------------------------------------------------


def test_group_and_host_vars_precedence(tmp_path: Path) -> None:
    inv = write(
        tmp_path,
        {
            "hosts.yaml": "all:\n  vars: {x: inv_all, y: inv_all}\n  children:\n    prod:\n"
            "      children:\n        web:\n          hosts:\n            web1: {h: inv_host}\n"
            "          vars: {x: inv_web}\n",
            "group_vars/all.yml": "x: gv_all\ny: gv_all\n",
            "group_vars/prod/a.yaml": "z: gv_prod_a\n",
            "group_vars/prod/b.json": '{"z": "gv_prod_b"}',
            "group_vars/prod/notes.txt": "z: ignored\n",
            "host_vars/web1": "h: hv\n",
            "host_vars/ghost.yml": "h: nobody\n",
        },
    )
    loaded = load_inventory(inv / "hosts.yaml")
    web1 = loaded.hosts["web1"]
    # group_vars/all is above every group's inventory vars (Ansible's 3 < 4)
    assert (web1.vars["x"], web1.vars["y"]) == ("gv_all", "gv_all")
    assert web1.vars["z"] == "gv_prod_b"  # files of a group_vars dir load in sorted order
    assert web1.vars["h"] == "hv"
    assert web1.origins["h"] == str(inv / "host_vars/web1")
    assert any("host_vars/ghost" in w and "no host 'ghost'" in w for w in loaded.warnings)


def test_bad_vars_file_names_it(tmp_path: Path) -> None:
    inv = write(tmp_path, {"hosts.ini": "web1\n", "group_vars/all.yml": "- a list\n"})
    with pytest.raises(InventoryError, match=r"group_vars/all\.yml: vars file must be a mapping"):
        load_inventory(inv / "hosts.ini")


# --- Jinja ------------------------------------------------------------------------------------


def test_jinja_values_are_templated_lazily_with_final_precedence(tmp_path: Path) -> None:
    inv = write(
        tmp_path,
        {
            "hosts.yaml": "all:\n  vars:\n    path: '{{ base }}/build'\n    port_base: 2200\n"
            "  hosts:\n    h1:\n      ansible_user: '{{ u }}'\n      u: alice\n"
            "      ansible_port: '{{ port_base + 2 }}'\n      unused: '{{ nope }}'\n",
            "host_vars/h1.yml": "base: /srv\n",
        },
    )
    h1 = load_inventory(inv / "hosts.yaml").hosts["h1"]
    assert (h1.vars["path"], h1.user, h1.port) == ("/srv/build", "alice", 2202)
    assert h1.raw_vars["path"] == "{{ base }}/build"
    # broken but unused: recorded, not fatal (Ansible only fails on use)
    assert "unused" not in h1.vars and "'nope' is undefined" in h1.var_errors["unused"]


@pytest.mark.parametrize(
    "value, why",
    [
        ("{{ lookup('env', 'HOME') }}", "lookup() is an Ansible lookup"),
        ("{{ 'a' | regex_replace('a', 'b') }}", "the filter 'regex_replace' is Ansible's"),
        ("{{ ''.__class__ }}", "refused by the sandbox"),
        ("{{ 'x' * 100000000 }}", "exceed"),
        ("{{ ansible_user }}", "cycle: ansible_user -> ansible_user"),
        ("{{ missing }}", "'missing' is undefined"),
    ],
)
def test_refused_jinja_names_file_and_key(tmp_path: Path, value: str, why: str) -> None:
    path = write(tmp_path, {"hosts.yaml": f'h1:\n  hosts:\n    h1:\n      ansible_user: "{value}"\n'})
    with pytest.raises(InventoryError) as info:
        load_inventory(path / "hosts.yaml")
    text = str(info.value)
    assert text.startswith(f"{path / 'hosts.yaml'}: host 'h1': ansible_user: ") and why in text


def test_broken_jinja_in_a_var_the_playbook_uses_is_bad_input(tmp_path: Path) -> None:
    inv = write(tmp_path, {"hosts.yaml": "h:\n  hosts:\n    h1:\n      where: '{{ nope }}'\n"})
    pb = write(
        tmp_path, {"pb.yaml": "name: t\nsteps:\n  - name: s\n    run: echo {{ where }}\n"}
    )
    err = io.StringIO()
    code = main(["run", "-i", str(inv / "hosts.yaml"), "-p", str(pb / "pb.yaml")], stderr=err)
    assert code == 2
    assert "hosts.yaml: host 'h1': where: undefined variable" in err.getvalue()


# --- ssh arguments and ignored settings -------------------------------------------------------


def test_ssh_common_and_extra_args(tmp_path: Path) -> None:
    inv = write(
        tmp_path,
        {
            "hosts.yaml": "all:\n  vars:\n"
            "    ansible_ssh_common_args: '-o ProxyJump=ops@bastion:2022 -o Port=2200 "
            "-o ServerAliveInterval=7 -o StrictHostKeyChecking=no'\n"
            "    ansible_ssh_extra_args: '-o User=late -o Port=1'\n"
            "    ansible_become: true\n"
            "  hosts:\n    h1:\n    h2: {ansible_port: 22}\n",
        },
    )
    loaded = load_inventory(inv / "hosts.yaml")
    h1, h2 = loaded.hosts["h1"], loaded.hosts["h2"]
    assert (h1.proxy_jump, h1.port, h1.user) == ("ops@bastion:2022", 2200, "late")
    assert h1.vars["repro_keepalive_interval"] == 7.0
    assert h2.port == 22  # ansible_port is passed to ssh first: it wins over -o Port
    text = "\n".join(loaded.warnings)
    assert "ansible_ssh_common_args: stricthostkeychecking ignored" in text
    assert "ansible_become is not used by repro; ignored (hosts h1, h2)" in text
    assert str(inv / "hosts.yaml") in text


def test_ssh_args_known_hosts_file_is_the_hosts_known_hosts(tmp_path: Path) -> None:
    """-o UserKnownHostsFile names the file keys are checked against (repro_known_hosts wins;
    ssh keeps the first value; a relative path is the inventory's, as repro_known_hosts is)."""
    inv = write(
        tmp_path,
        {
            "hosts.yaml": "all:\n  vars:\n"
            "    ansible_ssh_common_args: '-o UserKnownHostsFile=lab/known_hosts'\n"
            "    ansible_ssh_extra_args: '-o UserKnownHostsFile=/late'\n"
            "  hosts:\n    h1:\n    h2: {repro_known_hosts: /mine}\n"
            "    h3: {ansible_ssh_common_args: \"-o 'UserKnownHostsFile ~/a /b'\"}\n"
            "    h4: {ansible_ssh_common_args: '-o UserKnownHostsFile=/dev/null'}\n"
            "    h5: {ansible_ssh_common_args: '-o UserKnownHostsFile=~/kh-%h'}\n",
        },
    )
    loaded = load_inventory(inv / "hosts.yaml")
    known = {name: h.known_hosts for name, h in loaded.hosts.items()}
    assert known["h1"] == str(tmp_path / "lab" / "known_hosts")
    assert known["h2"] == "/mine"
    assert known["h3"] == str(Path("~/a").expanduser())
    # "no file" and unexpanded tokens: the default file, never none at all
    assert known["h4"] is None and known["h5"] is None
    text = "\n".join(loaded.warnings)
    assert "UserKnownHostsFile: only ~/a is read (/b not)" in text
    assert "UserKnownHostsFile '/dev/null' ignored (keys are always checked" in text
    assert "UserKnownHostsFile '~/kh-%h' ignored (%-tokens are not expanded" in text


@pytest.mark.parametrize(
    "args, why",
    [
        ("-o ProxyCommand='nc %h %p'", "ProxyCommand is not supported here"),
        ("-o LocalForward=8080:x:80", "-o localforward is not supported"),
        ("-D 1080", "'-D' is not supported"),
        ("-o 'unclosed", "cannot split"),
    ],
)
def test_ssh_args_refused_clearly(tmp_path: Path, args: str, why: str) -> None:
    path = write(
        tmp_path, {"h.yaml": f'h:\n  hosts:\n    h1:\n      ansible_ssh_extra_args: "{args}"\n'}
    )
    with pytest.raises(InventoryError) as info:
        load_inventory(path / "h.yaml")
    assert str(info.value).startswith(f"{path / 'h.yaml'}: host 'h1': ansible_ssh_extra_args")
    assert why in str(info.value)


# --- --inventory-via --------------------------------------------------------------------------


def test_plugin_config_needs_ansible_or_says_so(tmp_path: Path) -> None:
    path = write(tmp_path, {"aws_ec2.yaml": "plugin: amazon.aws.aws_ec2\n"}) / "aws_ec2.yaml"
    with pytest.raises(InventoryError, match=r"inventory plugin config.*--inventory-via ansible"):
        load_inventory(path, via="builtin")
    with pytest.raises(UsageError, match="--inventory-via 'cloud'"):
        load_inventory(path, via="cloud")


# --- --limit ------------------------------------------------------------------------------------


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    hosts = "".join(f"    web{i}:\n" for i in range(1, 8))
    return write(tmp_path, {"f.yaml": f"web:\n  hosts:\n{hosts}db:\n  hosts:\n    db1:\n"}) / "f.yaml"


@pytest.mark.parametrize(
    "pattern, expected",
    [
        ("web[0]", ["web1"]),
        ("web[-1]", ["web7"]),
        ("web[1:2]", ["web2", "web3"]),
        ("web[5:]", ["web6", "web7"]),
        ("web[0]:db", ["web1", "db1"]),
        ("all:!web[1:]", ["web1", "db1"]),
    ],
)
def test_limit_subscripts(fleet: Path, pattern: str, expected: list[str]) -> None:
    assert sorted(names(select(load_inventory(fleet), pattern))) == sorted(expected)


def test_limit_subscript_out_of_range_and_limit_files(fleet: Path, tmp_path: Path) -> None:
    inv = load_inventory(fleet)
    with pytest.raises(UnknownHostError, match="web has 7 hosts, no index 9"):
        select(inv, "web[9]")
    retry = tmp_path / "retry"
    retry.write_text("web3\n\ndb1\n")
    assert names(select(inv, f"@{retry}")) == ["web3", "db1"]
    assert names(select(inv, f"@{retry}:!db1")) == ["web3"]
    with pytest.raises(UsageError, match="cannot read"):
        select(inv, f"@{tmp_path / 'missing'}")


# --- repro inventory ----------------------------------------------------------------------------


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_inventory_command_shapes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inv = write(tmp_path, {"h.ini": "top v=1\n[web]\nw1 p='{{ v }}'\n[web:vars]\nv=2\n"})
    code, out, err = run_cli("inventory", "-i", str(inv / "h.ini"), "--list")
    assert code == 0 and err == ""
    data = json.loads(out)
    assert data["all"] == {"children": ["ungrouped", "web"]}
    assert data["web"] == {"hosts": ["w1"]}
    assert data["_meta"]["hostvars"]["w1"] == {"p": "{{ v }}", "v": 2}
    code, out, _ = run_cli("inventory", "-i", str(inv / "h.ini"), "--graph")
    assert out == "@all:\n  |--@ungrouped:\n  |  |--top\n  |--@web:\n  |  |--w1\n"
    code, out, _ = run_cli("inventory", "-i", str(inv / "h.ini"), "--host", "w1", "--resolved")
    assert json.loads(out)["p"] == {"value": 2, "as_written": "{{ v }}", "from": str(inv / "h.ini")}
    # ANSIBLE_INVENTORY when -i is absent
    monkeypatch.setenv("ANSIBLE_INVENTORY", str(inv / "h.ini"))
    code, out, _ = run_cli("inventory", "--host", "top")
    assert (code, json.loads(out)) == (0, {"v": 1})
    code, _, err = run_cli("inventory", "--host", "nobody")
    assert code == 2 and "no host 'nobody'" in err


def test_several_sources_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = write(tmp_path / "a", {"hosts.ini": "[web]\nw1 x=a\n", "group_vars/web.yml": "g: a\n"})
    b = write(tmp_path / "b", {"hosts.yaml": "web:\n  hosts:\n    w1: {x: b}\n    w2:\n"})
    inv = load_inventory([a / "hosts.ini", b / "hosts.yaml"])
    assert list(inv.hosts) == ["w1", "w2"]
    assert inv.hosts["w1"].vars["x"] == "b" and inv.hosts["w2"].vars["g"] == "a"
    code, out, _ = run_cli("inventory", "-i", str(a / "hosts.ini"), "-i", str(b / "hosts.yaml"))
    assert code == 0 and json.loads(out)["web"] == {"hosts": ["w1", "w2"]}
    # ANSIBLE_INVENTORY is a comma-separated list of paths, as Ansible reads it
    monkeypatch.setenv("ANSIBLE_INVENTORY", f"{a / 'hosts.ini'},{b / 'hosts.yaml'}")
    code, out, _ = run_cli("inventory", "--host", "w2")
    assert (code, json.loads(out)) == (0, {"g": "a"})
