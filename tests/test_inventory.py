"""Unit tests for repro.inventory: Ansible YAML loading, layered vars, ranges, --limit patterns.

Every inventory is a real file in tmp_path; the repo's own inventory.yaml is loaded as shipped.
"""

from __future__ import annotations

import ipaddress
import os
import re
import textwrap
from pathlib import Path

import pytest
import yaml

from repro.errors import InputError, InventoryError, UnknownHostError, UsageError
from repro.inventory import (
    MAX_RANGE_HOSTS,
    Host,
    Inventory,
    expand_host_range,
    is_safe_name,
    load_inventory,
    parse_extra_vars,
    select,
)

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str, name: str = "inventory.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, **extra: str) -> Inventory:
    return load_inventory(write(tmp_path, text), extra or None)


def load_error(tmp_path: Path, text: str) -> str:
    """Load an inventory that must fail; the message must be one line naming the file."""
    path = write(tmp_path, text)
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message


# --- groups, hosts and the fields taken from ansible_* variables -----------------------------


NESTED = """
    all:
      hosts:
        lone:
      children:
        baremetal:
          children:
            intel:
              hosts:
                spr1:
                spr2: {ansible_host: 192.0.2.2}
            amd:
              hosts:
                zen1:
        gpu:
          hosts:
            spr2:
            zen1:
"""


def test_nested_children_membership_and_order(tmp_path: Path) -> None:
    inv = load(tmp_path, NESTED)
    assert list(inv.hosts) == ["lone", "spr1", "spr2", "zen1"]  # first-seen file order
    assert inv.groups["all"] == ("lone", "spr1", "spr2", "zen1")
    assert inv.groups["baremetal"] == ("spr1", "spr2", "zen1")  # through its children
    assert inv.groups["intel"] == ("spr1", "spr2")
    assert inv.groups["gpu"] == ("spr2", "zen1")
    assert inv.groups["ungrouped"] == ("lone",)
    # A host under two groups is one host, in every group that holds it, outermost first.
    assert inv.hosts["spr2"].groups == ("all", "baremetal", "gpu", "intel")
    assert inv.hosts["spr2"].address == "192.0.2.2"
    assert inv.hosts["lone"].groups == ("all", "ungrouped")


def test_top_level_groups_without_all_are_children_of_all(tmp_path: Path) -> None:
    inv = load(
        tmp_path,
        """
        web:
          hosts:
            web1:
        db:
          vars: {role: db}
          hosts: db1
        """,
    )
    assert list(inv.hosts) == ["web1", "db1"]
    assert inv.groups["all"] == ("web1", "db1")
    assert inv.hosts["db1"].groups == ("all", "db")
    assert inv.hosts["db1"].vars["role"] == "db"  # `hosts: db1` is Ansible's one-host form


def test_host_defaults_and_null_bodies(tmp_path: Path) -> None:
    host = load(tmp_path, "all:\n  hosts:\n    build1:\n").hosts["build1"]
    assert host == Host(
        name="build1", address="build1", port_set=False, groups=("all", "ungrouped")
    )
    assert (host.port, host.user, host.key_file, host.known_hosts) == (22, None, None, None)
    assert (host.connection, host.transport) == ("ssh", "asyncssh")
    assert host.vars == {"inventory_hostname": "build1"}
    assert repr(host) == "Host('build1', build1:22)"


def test_ansible_connection_variables(tmp_path: Path) -> None:
    inv = load(
        tmp_path,
        """
        all:
          hosts:
            a:
              ansible_host: host-a.example.org
              ansible_port: 2222
              ansible_user: builder
              ansible_ssh_private_key_file: ~/.ssh/repro_key
              repro_transport: fabric
            b: {ansible_connection: local}
            c: {ansible_connection: smart, ansible_port: "2200"}
            d: {ansible_connection: paramiko, ansible_ssh_host: "2001:db8::1"}
            e: {ansible_connection: ansible.builtin.ssh, ansible_ssh_user: old}
        """,
    )
    a = inv.hosts["a"]
    assert (a.address, a.port, a.user, a.transport) == (
        "host-a.example.org",
        2222,
        "builder",
        "fabric",
    )
    assert a.key_file == os.path.expanduser("~/.ssh/repro_key")
    assert not a.key_file.startswith("~")
    assert (
        a.vars["ansible_ssh_private_key_file"] == "~/.ssh/repro_key"
    )  # vars keep what was written
    assert inv.hosts["b"].connection == "local"
    assert repr(inv.hosts["b"]) == "Host('b', local)"
    assert (inv.hosts["c"].connection, inv.hosts["c"].port) == ("ssh", 2200)
    assert (inv.hosts["d"].connection, inv.hosts["d"].address) == ("ssh", "2001:db8::1")
    assert (inv.hosts["e"].connection, inv.hosts["e"].user) == ("ssh", "old")


def test_port_after_host_name_and_range(tmp_path: Path) -> None:
    inv = load(
        tmp_path,
        """
        all:
          hosts:
            web1:2201:
            "node[1:2]:2300": {ansible_user: u}
            db1:2400: {ansible_port: 2500}
        """,
    )
    assert inv.hosts["web1"].port == 2201
    assert [inv.hosts[n].port for n in ("node1", "node2")] == [2300, 2300]
    assert inv.hosts["db1"].port == 2500  # an explicit var beats the `:port` suffix, as Ansible


def test_known_hosts_relative_to_inventory_dir(tmp_path: Path) -> None:
    sub = tmp_path / "site"
    sub.mkdir()
    inv = load(
        sub,
        """
        all:
          hosts:
            rel: {repro_known_hosts: keys/known_hosts}
            abs: {repro_known_hosts: /etc/ssh/ssh_known_hosts}
            home: {repro_known_hosts: ~/kh}
        """,
    )
    assert inv.hosts["rel"].known_hosts == str(sub / "keys" / "known_hosts")
    assert inv.hosts["abs"].known_hosts == "/etc/ssh/ssh_known_hosts"
    assert inv.hosts["home"].known_hosts == os.path.expanduser("~/kh")


def test_host_vars_are_not_shared_between_hosts(tmp_path: Path) -> None:
    inv = load(tmp_path, "all:\n  vars: {tags: [a]}\n  hosts: {h1: , h2: }\n")
    inv.hosts["h1"].vars["tags"].append("changed")
    assert inv.hosts["h2"].vars["tags"] == ["a"]


# --- host ranges ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "names"),
    [
        ("build[01:03]", ["build01", "build02", "build03"]),
        ("node[1:10:2]", ["node1", "node3", "node5", "node7", "node9"]),
        ("rack[a:c]", ["racka", "rackb", "rackc"]),
        ("r[x:B]", ["rx", "ry", "rz", "rA", "rB"]),  # Ansible's a-zA-Z order
        ("n[a:e:2]", ["na", "nc", "ne"]),
        ("h[:2]", ["h0", "h1", "h2"]),  # an empty begin is 0
        (
            "db[1:2]-[a:b].example.org",
            ["db1-a.example.org", "db1-b.example.org", "db2-a.example.org", "db2-b.example.org"],
        ),
        ("[8:10]x", ["8x", "9x", "10x"]),
        ("plain", ["plain"]),
    ],
)
def test_expand_host_range(pattern: str, names: list[str]) -> None:
    assert expand_host_range(pattern) == names


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("b[3:1]", "greater than end"),
        ("b[c:a]", "comes after end"),
        ("b[01:3]", "differ in width"),
        ("b[1:3:0]", "positive whole number"),
        ("b[1:3:-1]", "positive whole number"),
        ("b[1:3:x]", "positive whole number"),
        ("b[1:x]", "two numbers or two single letters"),
        ("b[aa:ab]", "two numbers or two single letters"),
        ("b[1]", "begin:end"),
        ("b[1:2:3:4]", "begin:end"),
        ("b[1:]", "has no end"),
        ("b[1:3", "unbalanced"),
        ("b1:3]", "unbalanced"),
        ("b][1:3]", "unbalanced"),
        (f"b[1:{MAX_RANGE_HOSTS + 1}]", "more than"),
        ("b[1:200]c[1:200]", "more than"),
    ],
)
def test_bad_ranges(tmp_path: Path, pattern: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        expand_host_range(pattern)
    message = load_error(tmp_path, f'g:\n  hosts:\n    "{pattern}":\n')
    assert f"group 'g': bad host range '{pattern}'" in message
    assert why in message


def test_ranges_in_an_inventory(tmp_path: Path) -> None:
    inv = load(
        tmp_path,
        """
        builders:
          vars: {ansible_user: b}
          hosts:
            build[01:03]:
            node[1:10:2]: {ansible_port: 2222}
            rack[a:c]:
        """,
    )
    assert list(inv.hosts) == [
        "build01", "build02", "build03",
        "node1", "node3", "node5", "node7", "node9",
        "racka", "rackb", "rackc",
    ]  # fmt: skip
    assert {inv.hosts[n].port for n in inv.groups["builders"] if n.startswith("node")} == {2222}
    assert inv.hosts["build02"].user == "b"


# --- variable precedence ----------------------------------------------------------------------


PRECEDENCE = """
    all:
      vars: {v: all, from_all: 1}
      children:
        parent:
          vars: {v: parent, from_parent: 1}
          hosts:
            in_parent:
          children:
            child:
              vars: {v: child}
              hosts:
                in_child:
                with_own: {v: host}
      hosts:
        in_all:
"""


def test_precedence_all_parent_child_host_extra(tmp_path: Path) -> None:
    inv = load(tmp_path, PRECEDENCE)
    assert {n: h.vars["v"] for n, h in inv.hosts.items()} == {
        "in_parent": "parent",
        "in_child": "child",
        "with_own": "host",
        "in_all": "all",
    }
    child = inv.hosts["in_child"].vars
    assert (child["from_all"], child["from_parent"], child["inventory_hostname"]) == (
        1,
        1,
        "in_child",
    )
    assert inv.hosts["in_child"].groups == ("all", "parent", "child")

    overridden = load(tmp_path, PRECEDENCE, v="extra", ansible_port="2022")
    assert {h.vars["v"] for h in overridden.hosts.values()} == {"extra"}
    assert {h.port for h in overridden.hosts.values()} == {2022}  # -e strings still make ports


def test_extra_vars_cannot_rename_a_host(tmp_path: Path) -> None:
    inv = load(tmp_path, PRECEDENCE, inventory_hostname="evil")
    assert inv.hosts["in_child"].vars["inventory_hostname"] == "in_child"


def test_sibling_groups_later_name_wins_not_file_order(tmp_path: Path) -> None:
    # zeta is written first; Ansible's rule (depth, priority, name) still lets zeta win.
    inv = load(
        tmp_path,
        """
        zeta:
          vars: {v: zeta, only_zeta: z}
          hosts: {both: }
        alpha:
          vars: {v: alpha, only_alpha: a}
          hosts: {both: }
        """,
    )
    both = inv.hosts["both"]
    assert both.groups == ("all", "alpha", "zeta")
    assert (both.vars["v"], both.vars["only_zeta"], both.vars["only_alpha"]) == ("zeta", "z", "a")


def test_deeper_group_beats_sibling_by_depth_and_priority_reorders(tmp_path: Path) -> None:
    inv = load(
        tmp_path,
        """
        a:
          children:
            aa:
              vars: {v: aa}
              hosts: {h: }
        zz:
          vars: {v: zz}
          hosts: {h: }
        p_low:
          vars: {v: p_low, ansible_group_priority: 10}
          hosts: {q: }
        p_high:
          vars: {v: p_high, ansible_group_priority: "2"}
          hosts: {q: }
        """,
    )
    assert inv.hosts["h"].vars["v"] == "aa"  # depth 2 beats depth 1 whatever the names
    assert inv.hosts["q"].vars["v"] == "p_low"  # a higher priority wins over the name rule
    assert inv.hosts["q"].groups == ("all", "p_high", "p_low")
    assert "ansible_group_priority" not in inv.hosts["q"].vars  # a setting, as in Ansible


def test_repeated_group_and_host_entries_merge(tmp_path: Path) -> None:
    inv = load(
        tmp_path,
        """
        all:
          children:
            g:
              vars: {a: 1, b: 1}
              hosts: {h: {x: 1, y: 1}}
        g:
          vars: {b: 2}
          hosts: {h: {y: 2}}
        """,
    )
    assert {k: inv.hosts["h"].vars[k] for k in "abxy"} == {"a": 1, "b": 2, "x": 1, "y": 2}
    assert inv.hosts["h"].groups == ("all", "g")


# --- --limit patterns -------------------------------------------------------------------------


PATTERNS = """
    all:
      hosts:
        solo:
      children:
        web:
          hosts:
            web1:
            web2:
            webby:
        db:
          hosts:
            db1:
            web2:
          children:
            replicas:
              hosts:
                db2:
        empty:
        both:
          hosts:
            both:
            db1:
"""


@pytest.fixture()
def inv(tmp_path: Path) -> Inventory:
    return load(tmp_path, PATTERNS)


def names(inventory: Inventory, pattern: str | None) -> list[str]:
    return [host.name for host in select(inventory, pattern)]


EVERY = ["solo", "web1", "web2", "webby", "db1", "db2", "both"]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (None, EVERY),
        ("all", EVERY),
        ("*", EVERY),
        ("web1", ["web1"]),  # a host name
        ("db", ["web2", "db1", "db2"]),  # a group, with its children's hosts, inventory order
        ("replicas", ["db2"]),
        ("web?", ["web1", "web2"]),  # glob over hosts and groups
        ("web*", ["web1", "web2", "webby"]),
        ("d*", ["web2", "db1", "db2"]),  # the glob matches group db too
        ("~web[0-9]", ["web1", "web2"]),  # regex
        ("~(db|solo)", ["solo", "web2", "db1", "db2"]),
        ("web1:db1", ["web1", "db1"]),  # union with ':'
        ("db1,web1", ["web1", "db1"]),  # union with ',' (result in inventory order)
        ("web1,web1,web*", ["web1", "web2", "webby"]),  # no duplicates
        ("web:&db", ["web2"]),  # intersection
        ("db:!web", ["db1", "db2"]),  # exclusion
        ("!web:db", ["db1", "db2"]),  # exclusions apply last whatever the order
        ("&db:web", ["web2"]),  # intersections apply after unions
        ("!db", ["solo", "web1", "webby", "both"]),  # only exclusions: start from all
        ("&web", ["web1", "web2", "webby"]),
        ("web:db:&both:!web2", ["db1"]),  # combined
        (" web1 , db2 ", ["web1", "db2"]),
        ("both", ["both"]),  # a host and a group share the name: the host, as Ansible
        ("&both", ["db1", "both"]),  # ... but & and ! mean the group
        ("ungrouped", ["solo"]),
    ],
)
def test_select(inv: Inventory, pattern: str | None, expected: list[str]) -> None:
    assert names(inv, pattern) == expected


def test_regex_is_anchored_like_ansible(inv: Inventory) -> None:
    # Ansible compiles `~regex` and calls .match, so it must match from the name's start.
    assert names(inv, "~web") == ["web1", "web2", "webby"]
    with pytest.raises(UnknownHostError, match="matches '~eb'"):
        select(inv, "~eb")


@pytest.mark.parametrize("pattern", ["nosuch", "web1:nosuch", "web1:!nosuch", "web:&nos*", "~zz"])
def test_element_matching_nothing(inv: Inventory, pattern: str) -> None:
    element = pattern.split(":")[-1].lstrip("!&")
    with pytest.raises(UnknownHostError) as info:
        select(inv, pattern)
    assert str(info.value) == f"no host or group in {inv.path} matches '{element}'"
    assert isinstance(info.value, KeyError)
    assert isinstance(info.value, InputError)


def test_empty_group_and_empty_result(inv: Inventory) -> None:
    with pytest.raises(UnknownHostError, match="matches only empty groups .*: empty"):
        select(inv, "empty")
    with pytest.raises(UnknownHostError) as info:
        select(inv, "web1:&db")
    assert str(info.value) == f"host pattern 'web1:&db' selects no host in {inv.path}"
    with pytest.raises(KeyError):
        select(inv, "db:!db")


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("", "empty"),
        (" , ", "empty"),
        ("web1:!", "followed by a name"),
        ("~web(", "bad regular expression"),
    ],
)
def test_malformed_patterns(inv: Inventory, pattern: str, why: str) -> None:
    with pytest.raises(UsageError, match=why):
        select(inv, pattern)


# --- -e parsing -------------------------------------------------------------------------------


def test_extra_vars_key_value() -> None:
    got = parse_extra_vars(["a=1", "url=http://x/?q=1", "empty=", "a=2", "port=2222"])
    assert got == {"a": "2", "url": "http://x/?q=1", "empty": "", "port": "2222"}  # strings


def test_extra_vars_missing_equals_names_item() -> None:
    with pytest.raises(UsageError) as info:
        parse_extra_vars(["ok=1", "oops"])
    assert str(info.value) == "-e 'oops': expected KEY=VALUE or @file.yaml"
    with pytest.raises(UsageError, match="file name after '@'"):
        parse_extra_vars(["@"])


@pytest.mark.parametrize("item", ["=v", "1x=v", "a-b=v", "a b=v", "é=v", "a.b=v"])
def test_extra_vars_bad_key(item: str) -> None:
    with pytest.raises(UsageError, match="is not a variable name"):
        parse_extra_vars([item])


def test_extra_vars_from_file(tmp_path: Path) -> None:
    path = write(tmp_path, "ref: v1.2.3\njobs: 4\nlist: [a, b]\n", "vars.yaml")
    got = parse_extra_vars(["jobs=1", f"@{path}", "ref=main"])
    assert got == {"jobs": 4, "list": ["a", "b"], "ref": "main"}  # later items win
    assert parse_extra_vars([f"@{write(tmp_path, '', 'empty.yaml')}"]) == {}


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (None, "extra-vars file not found"),
        ("- a\n- b\n", "must be a mapping of variables, not a list"),
        ("a: [1\n", "invalid YAML at line 2"),
        ("1: x\n", "1 is not a variable name"),
        ("bad-key: x\n", "'bad-key' is not a variable name"),
    ],
)
def test_extra_vars_file_errors(tmp_path: Path, text: str | None, why: str) -> None:
    path = tmp_path / "vars.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(UsageError) as info:
        parse_extra_vars([f"@{path}"])
    assert str(info.value).startswith(f"{path}: ") and why in str(info.value)


# --- bad inventory files ----------------------------------------------------------------------


def test_missing_file_and_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(
        InventoryError, match=f"^{re.escape(str(missing))}: inventory file not found$"
    ):
        load_inventory(missing)
    with pytest.raises(InventoryError, match="inventory directory holds no inventory file"):
        load_inventory(tmp_path)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_bytes(b"all:\n  hosts:\n    h\xff:\n")
    with pytest.raises(InventoryError, match="not UTF-8 text"):
        load_inventory(path)


def test_invalid_yaml_names_line(tmp_path: Path) -> None:
    message = load_error(tmp_path, "all:\n  hosts:\n    a: 1\n   b: [2\n")
    assert "invalid YAML at line 4" in message


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "inventory is empty"),
        ("- all\n", "top level must be a mapping of groups such as 'all:', not a list"),
        ("plugin: aws_ec2\n", "inventory plugin config"),
        ("all:\n  vars: {a: 1}\n", "inventory has no hosts"),
        ("g:\n  hosts: [a, b]\n", "group 'g': 'hosts' must be a mapping, not a list"),
        ("g:\n  children: [a]\n", "group 'g': 'children' must be a mapping, not a list"),
        ("g:\n  vars: [a]\n", "group 'g': 'vars' must be a mapping, not a list"),
        ("g:\n  vars: a\n", "group 'g': 'vars' must be a mapping, not a string"),
        ("g: [a]\n", "group 'g' must be a mapping of hosts/children/vars, not a list"),
        ("g:\n  host: {a: }\n", "group 'g': unknown key 'host' (only hosts, children, vars)"),
        ("g:\n  hosts: {a: 1}\n", "host 'a' must map to variables, not a number"),
        ("g:\n  hosts: {1: }\n", "group 'g': host name 1 must be a string (quote it)"),
        ("g:\n  hosts: {a: {1: x}}\n", "host 'a': variable name 1 must be a non-empty string"),
        ("g:\n  vars: {~: x}\n  hosts: {a: }\n", "variable name None must be a non-empty"),
        ("a:\n  children: {b: }\n  hosts: {h: }\nb:\n  children: {a: }\n", "(a cycle)"),
        ("g:\n  children: {all: }\n  hosts: {h: }\n", "'all' cannot be a child group"),
        ("g:\n  vars: {ansible_group_priority: x}\n  hosts: {h: }\n", "is not a number"),
    ],
)
def test_malformed_inventories(tmp_path: Path, text: str, why: str) -> None:
    assert why in load_error(tmp_path, text)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("0", "0"),
        ("65536", "65536"),
        ("'ssh'", "'ssh'"),
        ("true", "True"),
        ("-1", "-1"),
        ("'22 '", "'22 '"),
        ("[22]", "[22]"),
    ],
)
def test_bad_port(tmp_path: Path, value: str, shown: str) -> None:
    message = load_error(tmp_path, f"all:\n  hosts:\n    h1: {{ansible_port: {value}}}\n")
    assert message.endswith(f"host 'h1': ansible_port {shown} is not a port number (1-65535)")


def test_bad_port_in_host_key(tmp_path: Path) -> None:
    assert "ansible_port 70000 is not a port" in load_error(
        tmp_path, "g:\n  hosts:\n    h:70000:\n"
    )


@pytest.mark.parametrize(
    "name",
    ["../x", "a/b", "a b", ".hidden", "-x", "x\u0007y", "x\ny", "é", "a\\b", "", "x" * 256],
)
def test_unsafe_host_names(tmp_path: Path, name: str) -> None:
    assert not is_safe_name(name)
    quoted = name.encode("unicode_escape").decode().replace('"', '\\"')
    message = load_error(tmp_path, f'g:\n  hosts:\n    "{quoted}":\n')
    assert "unsafe host name" in message


@pytest.mark.parametrize("name", ["../g", "a/b", "g h", ".g", "-g", "g\u001bx"])
def test_unsafe_group_names(tmp_path: Path, name: str) -> None:
    quoted = name.encode("unicode_escape").decode()
    message = load_error(tmp_path, f'all:\n  children:\n    "{quoted}":\n      hosts: {{h: }}\n')
    assert "unsafe group name" in message
    assert "\x1b" not in message  # escaped, never raw terminal text


@pytest.mark.parametrize("name", ["host.example.com", "build_01", "a-b", "0", "A.b-c_d"])
def test_safe_names(tmp_path: Path, name: str) -> None:
    assert is_safe_name(name)
    assert list(load(tmp_path, f'g:\n  hosts:\n    "{name}":\n').hosts) == [name]


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("ansible_host", "-oProxyCommand=x", "is not a host name or IP address"),
        ("ansible_host", "-oBatchMode", "is not a host name or IP address"),  # an ssh option
        ("ansible_host", "a b", "is not a host name or IP address"),
        ("ansible_host", "a\\nb", "is not a host name or IP address"),
        ("ansible_host", "a;b", "is not a host name or IP address"),
        ("ansible_host", "", "is not a host name or IP address"),
        ("ansible_ssh_host", "$(x)", "is not a host name or IP address"),
        ("ansible_user", "-l", "is not a user name"),
        ("ansible_user", "a b", "is not a user name"),
        ("ansible_user", "a\\tb", "is not a user name"),
        ("ansible_ssh_private_key_file", "k\\u0000", "is not a file path"),
        ("repro_known_hosts", "", "is not a file path"),
        ("ansible_connection", "winrm", "is not supported (ssh, paramiko, local)"),
        ("ansible_connection", "docker", "is not supported (ssh, paramiko, local)"),
        ("repro_transport", "telnet", "is not one of asyncssh, fabric"),
    ],
)
def test_unsafe_or_unsupported_values(tmp_path: Path, key: str, value: str, why: str) -> None:
    message = load_error(tmp_path, f'all:\n  hosts:\n    h1:\n      {key}: "{value}"\n')
    assert f"host 'h1': {key} " in message and message.endswith(why)


def test_non_string_values(tmp_path: Path) -> None:
    assert "ansible_user 1000 is not a user name" in load_error(
        tmp_path, "all:\n  hosts:\n    h: {ansible_user: 1000}\n"
    )
    assert "ansible_host ['a'] is not a host name" in load_error(
        tmp_path, "all:\n  hosts:\n    h: {ansible_host: [a]}\n"
    )


def test_bad_value_from_extra_vars(tmp_path: Path) -> None:
    path = write(tmp_path, "all:\n  hosts:\n    h:\n")
    with pytest.raises(InventoryError, match="host 'h': ansible_port 'x' is not a port"):
        load_inventory(path, parse_extra_vars(["ansible_port=x"]))


# --- the repo's example inventory -------------------------------------------------------------


def test_repo_inventory_loads() -> None:
    inv = load_inventory(REPO / "inventory.yaml")
    assert len(inv.hosts) == 3
    assert set(inv.groups) >= {"baremetal", "intel", "amd", "cloud"}
    intel, amd, cloud = (inv.hosts[inv.groups[g][0]] for g in ("intel", "amd", "cloud"))
    assert {intel.name, amd.name} == set(inv.groups["baremetal"])
    assert len({intel.name, amd.name, cloud.name}) == 3
    assert [h.transport for h in (intel, amd, cloud)].count("fabric") == 1
    assert any(h.port != 22 for h in inv.hosts.values())
    assert all(h.user for h in inv.hosts.values())
    assert all("repro_work_dir" in h.vars for h in inv.hosts.values())
    assert len({h.vars["repro_work_dir"] for h in inv.hosts.values()}) > 1  # group var layered
    for host in inv.hosts.values():
        assert _is_documentation_address(host.address), host
    assert names(inv, "baremetal:!amd") == [intel.name]


def _is_documentation_address(address: str) -> bool:
    """RFC 5737 / RFC 3849 ranges or example names: nothing a test could ever reach."""
    if address.endswith((".example.org", ".example.com", ".example.net")):
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    nets = ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"]
    return any(ip in ipaddress.ip_network(net) for net in nets)


@pytest.mark.parametrize(
    "key, value",
    [
        ("repro_reconnect_timeout", "soon"),
        ("repro_reconnect_timeout", 0),
        ("repro_connect_timeout", -1),
        ("repro_keepalive_interval", True),
        ("repro_work_dir", "relative/dir"),
        ("repro_work_dir", "/srv/../etc"),
        ("repro_work_dir", "/srv/$(touch x)"),
    ],
)
def test_bad_repro_tuning_vars_are_bad_input(tmp_path: Path, key: str, value: object) -> None:
    inv = tmp_path / "inv.yaml"
    inv.write_text(yaml.safe_dump({"all": {"hosts": {"h1": {key: value}}}}))
    with pytest.raises(InventoryError) as err:
        load_inventory(inv)
    assert key in str(err.value) and "h1" in str(err.value)


def test_good_repro_tuning_vars_load(tmp_path: Path) -> None:
    inv = tmp_path / "inv.yaml"
    inv.write_text(yaml.safe_dump({"all": {"vars": {"repro_reconnect_timeout": 30,
                                                    "repro_work_dir": "~/builds"},
                                           "hosts": {"h1": {"repro_connect_timeout": "2.5"}}}}))
    assert load_inventory(inv).hosts["h1"].vars["repro_work_dir"] == "~/builds"
