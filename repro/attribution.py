"""Which host fact, build-environment value, inventory variable or --vary axis lines up with a
split: constant within each hash group and different between groups; never a claim of cause.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from repro.secrets import MASK, is_ansible_secret

#: host facts worth lining up with a split (the rest, like free disk or the clock, move anyway)
FACTS = (
    "cpu_vendor", "microarch", "cpu_model_name", "microcode", "isa", "cores", "kernel", "distro",
    "glibc", "virtualization", "cloud", "guix_version", "tmp_dir", "hostname",
)  # fmt: skip
#: reprotest's build-environment list, as facts.py's build_env reports it
BUILD_ENV = (
    "umask", "tz", "lang", "lc_all", "user", "uid", "gid", "home", "domain", "source_date_epoch",
)  # fmt: skip
#: facts that differ on every host by nature: they qualify only when nothing else does
HOST_UNIQUE = frozenset({"hostname", "home", "build path"})
#: variables that say how to reach a host (or name it), not how it builds
_CONNECTION = re.compile(r"^(ansible_|repro_|inventory_hostname$|group_names$)")
#: names that look secret even when nobody declared them (masked too: more, never less)
_SECRET_NAME = re.compile(r"(pass(word)?|secret|token|api_?key|private_key|credential)", re.I)
_MAX_FACTORS = 8
_MAX_VALUE = 80

Kind = Literal["axis", "variable", "build-env", "fact"]
Wording = Literal["differs by", "consistent with", "unexplained"]
Profile = dict[tuple[Kind, str], str]
_ORDER = {"axis": 0, "variable": 1, "build-env": 2, "fact": 3}


@dataclass(frozen=True)
class Factor:
    """One name whose value is constant within each group and different between groups."""

    kind: Kind
    name: str
    values: tuple[tuple[str, str], ...]  # (who: the group's hosts or round, value), per group
    on_every_host: bool = False  # different on every host (hostname, home): weak evidence

    def __repr__(self) -> str:
        return f"Factor({self.kind}, {self.name!r})"


@dataclass(frozen=True)
class Attribution:
    wording: Wording
    factors: tuple[Factor, ...] = ()
    note: str = ""  # one line that qualifies the wording

    def __repr__(self) -> str:
        return f"Attribution({self.wording}, {[f.name for f in self.factors]})"


# --- secrets ------------------------------------------------------------------------------------


def is_secret(name: str, declared: Sequence[str] = ()) -> bool:
    """Whether a variable's value must never be written down: repro.secrets' rule (declared
    in the playbook's `secrets:` or with --secret, or an Ansible password variable), and
    anything named like a password, token or key."""
    return name in declared or is_ansible_secret(name) or bool(_SECRET_NAME.search(name))


def masked(variables: Mapping[str, Any], declared: Sequence[str] = ()) -> dict[str, Any]:
    return {k: (MASK if is_secret(k, declared) else v) for k, v in sorted(variables.items())}


# --- what each host (or round) looked like ----------------------------------------------------


def profile(
    facts: Mapping[str, Any],
    variables: Mapping[str, Any],
    axes: Mapping[str, str],
    build_path: str,
) -> Profile:
    """Every comparable value of one build, keyed by (kind, name), as short text."""
    out: Profile = {}
    for name, value in axes.items():
        out[("axis", name)] = _text(value)
    for name, value in variables.items():
        if not _CONNECTION.match(name) and value != MASK:
            out[("variable", name)] = _text(value)
    env = facts.get("build_env") if isinstance(facts.get("build_env"), dict) else {}
    for name in BUILD_ENV:
        if isinstance(env, dict) and name in env:
            out[("build-env", name)] = _text(env[name])
    if build_path:
        out[("build-env", "build path")] = build_path
    for name in FACTS:
        if name in facts and facts[name] not in (None, ""):
            out[("fact", name)] = _text(facts[name])
    return out


def _text(value: Any) -> str:
    text = " ".join(value) if isinstance(value, list) else str(value)
    text = "true" if value is True else "false" if value is False else text or "(empty)"
    return text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 1] + "…"


# --- lining them up with the groups -------------------------------------------------------------


def attribute(
    groups: Sequence[Sequence[str]],
    profiles: Mapping[str, Profile],
    *,
    members: str = "host",
) -> Attribution:
    """Factors constant within each group and different between every two groups.

    `groups` hold member names (hosts, or "round 2"), `profiles` their values. A factor whose
    value differs on every member (hostname, home, build path) qualifies only when nothing
    else does. One factor reads "differs by"; several read "consistent with".
    """
    if len(groups) < 2 or any(not g for g in groups):
        return Attribution("unexplained", (), "")
    everyone = [m for g in groups for m in g]
    if not any(profiles.get(m) for m in everyone):
        # `repro sigs`, or hosts whose facts were not gathered: nothing to line up at all
        return Attribution("unexplained", (), f"nothing was recorded about these {members}s")
    keys = sorted({k for m in everyone for k in profiles.get(m, {})},
                  key=lambda k: (_ORDER[k[0]], k[1]))  # fmt: skip
    found: list[Factor] = []
    for key in keys:
        per_group = []
        for g in groups:
            values = {profiles.get(m, {}).get(key, "(unset)") for m in g}
            if len(values) != 1:
                break  # not constant within a group
            per_group.append(values.pop())
        else:
            if len(set(per_group)) == len(groups):
                all_values = [profiles.get(m, {}).get(key, "(unset)") for m in everyone]
                unique = len(everyone) > 2 and len(set(all_values)) == len(everyone)
                unique = unique or (key[1] in HOST_UNIQUE and len(everyone) > 1)
                # a --vary axis differs on purpose: it is the experiment, never weak evidence
                unique = unique and key[0] != "axis"
                who = tuple(_who(g, members) for g in groups)
                found.append(Factor(key[0], key[1], tuple(zip(who, per_group)), unique))
    strong = [f for f in found if not f.on_every_host]
    if strong:
        wording: Wording = "differs by" if len(strong) == 1 else "consistent with"
        return Attribution(wording, tuple(strong[:_MAX_FACTORS]), "")
    if found:
        return Attribution(
            "consistent with",
            tuple(found[:_MAX_FACTORS]),
            f"only values that differ on every {members} line up with the split; nothing the"
            f" {members}s of a group share explains it",
        )
    return Attribution(
        "unexplained",
        (),
        f"no recorded fact or variable is constant within each group and different between"
        f" groups: look for nondeterminism in the build itself",
    )


def _who(group: Sequence[str], members: str) -> str:
    shown = ", ".join(group[:3]) + (f" +{len(group) - 3}" if len(group) > 3 else "")
    return shown
