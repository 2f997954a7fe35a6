"""YAML loading with a bound on what a document may expand to (aliases count every time used).

yaml.safe_load shares an aliased node, so a 600-byte "billion laughs" loads small and only
blows up when walked (json.dumps, deepcopy, rendering): it is measured before it is built.
"""

from __future__ import annotations

from typing import Any

import yaml

#: nodes a document may hold once every alias is expanded; a large inventory has ~10^4
MAX_NODES = 200_000
#: aliases (`*name`) a document may use at all
MAX_ALIASES = 10_000


class YamlTooLarge(yaml.YAMLError):
    """The document expands past MAX_NODES, or uses more than MAX_ALIASES aliases."""


#: libyaml's loader where PyYAML has it (its wheels do): it composes in C, ~8x faster than the
#: pure-Python one on a 100-host inventory (85 ms of every run's start). The bounds below are
#: checked on the composed graph either way.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _expanded(node: yaml.Node, memo: dict[int, int], seen: list[int]) -> int:
    """How many nodes `node` stands for with every alias expanded (memoised: shared nodes
    are measured once, so a bomb costs its size in the file, not its expansion). `seen[0]`
    counts the aliases: every use of a node after its first is one."""
    key = id(node)
    if key in memo:
        seen[0] += 1
        if seen[0] > MAX_ALIASES:
            raise YamlTooLarge(f"more than {MAX_ALIASES} aliases (*name)")
        return memo[key]
    memo[key] = MAX_NODES + 1  # a node that contains itself expands without end
    total = 1
    if isinstance(node, yaml.SequenceNode):
        for child in node.value:
            total += _expanded(child, memo, seen)
            if total > MAX_NODES:
                break
    elif isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            total += _expanded(k, memo, seen) + _expanded(v, memo, seen)
            if total > MAX_NODES:
                break
    memo[key] = total
    return total


def load(text: str | bytes) -> Any:
    """Like yaml.safe_load (one document), but raises YamlTooLarge for a document that
    would expand past MAX_NODES nodes: every other failure is yaml's own YAMLError."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded(node, {}, [0]) > MAX_NODES:
            raise YamlTooLarge(
                f"expands to more than {MAX_NODES} values once its aliases are followed"
            )
        return loader.construct_document(node)
    except RecursionError:
        raise YamlTooLarge("nested too deeply") from None
    finally:
        loader.dispose()
