"""YAML to plain dicts and lists that remember where each piece was written.

ruamel.yaml's round-trip loader keeps positions too, but it is pure Python
and spends most of its time collecting comments: a 1,000-rule file took ~3 s.
Composing the node graph (with the C parser from ruamel.yaml.clib when it is
installed) and building the containers ourselves takes a tenth of that, and
lets duplicate keys become ordinary problems instead of a fatal error.
Scalars are resolved by YAML 1.2 rules: ``yes``/``no`` stay text.
"""

from __future__ import annotations

import io
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.nodes import MappingNode, Node, SequenceNode

Pos = tuple[int, int]


class PosMap(dict[Any, Any]):
    """A mapping with the 0-based (line, column) of itself, its keys and values."""

    def __init__(self, at: Pos) -> None:
        super().__init__()
        self.at = at
        self.key_at: dict[Any, Pos] = {}
        self.value_at: dict[Any, Pos] = {}


class PosList(list[Any]):
    """A sequence with the 0-based (line, column) of itself and each item."""

    def __init__(self, at: Pos) -> None:
        super().__init__()
        self.at = at
        self.item_at: list[Pos] = []


def _pos(node: Node) -> Pos:
    return (node.start_mark.line, node.start_mark.column)


class _Builder:
    def __init__(self, yaml: YAML) -> None:
        self.constructor = yaml.constructor
        self.duplicates: list[tuple[Pos, str]] = []
        # Anchors let one node appear twice; build it once.
        self.built: dict[int, Any] = {}

    def build(self, node: Node) -> Any:
        if id(node) in self.built:
            return self.built[id(node)]
        if isinstance(node, MappingNode):
            mapping = PosMap(_pos(node))
            self.built[id(node)] = mapping
            merged: list[tuple[Node, Node]] = []
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    # "<<: *defaults" copies keys the mapping does not set itself.
                    sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
                    merged.extend(
                        pair for source in sources if isinstance(source, MappingNode) for pair in source.value
                    )
                    continue
                self._add(mapping, key_node, value_node)
            for key_node, value_node in merged:
                if self.build(key_node) not in mapping:
                    self._add(mapping, key_node, value_node)
            return mapping
        if isinstance(node, SequenceNode):
            sequence = PosList(_pos(node))
            self.built[id(node)] = sequence
            for item in node.value:
                sequence.append(self.build(item))
                sequence.item_at.append(_pos(item))
            return sequence
        value = self.constructor.construct_object(node, deep=True)
        self.built[id(node)] = value
        return value

    def _add(self, mapping: PosMap, key_node: Node, value_node: Node) -> None:
        key = self.build(key_node)
        if not isinstance(key, str | int | float | bool) and key is not None:
            key = str(key)
        if key in mapping:
            line = mapping.key_at[key][0] + 1
            reason = f'duplicate key "{key}" (first at line {line})'
            self.duplicates.append((_pos(key_node), reason))
            return
        mapping[key] = self.build(value_node)
        mapping.key_at[key] = _pos(key_node)
        mapping.value_at[key] = _pos(value_node)


def load_positioned(text: str) -> tuple[Any, list[tuple[Pos, str]]]:
    """The document and any duplicate keys; YAML syntax errors propagate."""
    yaml = YAML(typ="safe")
    node = yaml.compose(io.StringIO(text))
    if node is None:
        return None, []
    builder = _Builder(yaml)
    return builder.build(node), builder.duplicates
