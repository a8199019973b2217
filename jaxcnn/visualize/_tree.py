"""Finding a layer by its Keras-style name in a nested variables/intermediates dict."""

from __future__ import annotations

from typing import Any, Callable, Mapping


def named_nodes(tree: Mapping[str, Any], keep: Callable[[Mapping[str, Any]], bool],
                prefix: str = "") -> dict[str, Mapping[str, Any]]:
  """All sub-dicts of ``tree`` for which ``keep`` holds, keyed by '/'-joined path."""
  found = {}
  for key, node in tree.items():
    if isinstance(node, Mapping):
      path = f"{prefix}{key}"
      if keep(node):
        found[path] = node
      found.update(named_nodes(node, keep, prefix=f"{path}/"))
  return found


def lookup(tree: Mapping[str, Any], name: str, keep: Callable[[Mapping[str, Any]], bool],
           what: str) -> Mapping[str, Any]:
  """The node called ``name``: a full path ('vgg16/block1_conv1') or its last part.

  Raises:
    ValueError: when no node, or more than one, has that name; the message
      lists the valid names.
  """
  nodes = named_nodes(tree, keep)
  if name in nodes:
    return nodes[name]
  matches = [path for path in nodes if path.rsplit("/", 1)[-1] == name]
  if len(matches) == 1:
    return nodes[matches[0]]
  if matches:
    raise ValueError(f"{what} name {name!r} is ambiguous; use one of the full paths {matches}")
  raise ValueError(f"no {what} named {name!r}; valid names: {sorted(nodes) or 'none'}")
