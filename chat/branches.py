"""Conversations as trees: which messages are shown, and the versions of each.

Every message has a parent: the message it answers or follows (None for a
first message). Siblings are versions of one another: a regenerated reply, an
edited question. The conversation shows one path from a first message down:
at each fork, the child chosen most recently (`Message.chosen_at`, set when a
message is created and when the person switches to it; ties go to the newer).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime


class Tree:
    """The (id, parent id, chosen at) rows of one conversation, in any order."""

    def __init__(self, rows: Iterable[tuple[int, int | None, datetime]]) -> None:
        self.parent: dict[int, int | None] = {}
        self.children: dict[int | None, list[int]] = defaultdict(list)
        self._rank: dict[int, tuple[datetime, int]] = {}
        for message_id, parent_id, chosen_at in sorted(rows, key=lambda row: row[0]):
            self.parent[message_id] = parent_id
            self.children[parent_id].append(message_id)
            self._rank[message_id] = (chosen_at, message_id)

    def __contains__(self, message_id: int) -> bool:
        return message_id in self.parent

    def chosen_child(self, parent_id: int | None) -> int | None:
        children = self.children.get(parent_id)
        return max(children, key=self._rank.__getitem__) if children else None

    def path(self) -> list[int]:
        """The messages shown, first to last."""
        return self._descend(self.chosen_child(None))

    def path_from(self, message_id: int) -> list[int]:
        """`message_id` and the messages shown below it."""
        return self._descend(message_id)

    def ancestry(self, message_id: int) -> list[int]:
        """The path from the first message down to `message_id`, both included."""
        path = []
        current: int | None = message_id
        while current is not None:
            path.append(current)
            current = self.parent[current]
        return path[::-1]

    def versions(self, message_id: int) -> list[int]:
        """`message_id` and its siblings, oldest first."""
        return list(self.children[self.parent[message_id]])

    def leaf(self) -> int | None:
        path = self.path()
        return path[-1] if path else None

    def _descend(self, message_id: int | None) -> list[int]:
        path = []
        while message_id is not None:
            path.append(message_id)
            message_id = self.chosen_child(message_id)
        return path


class Versions:
    """Where a message stands among its versions, for the "‹ 2/3 ›" control."""

    def __init__(self, ids: list[int], current: int) -> None:
        self.ids = ids
        self.index = ids.index(current)

    @property
    def number(self) -> int:
        return self.index + 1

    @property
    def count(self) -> int:
        return len(self.ids)

    @property
    def previous(self) -> int | None:
        return self.ids[self.index - 1] if self.index > 0 else None

    @property
    def next(self) -> int | None:
        return self.ids[self.index + 1] if self.index + 1 < len(self.ids) else None

    @property
    def attribute(self) -> str:
        """The ids as the page's `data-versions` holds them."""
        return ",".join(map(str, self.ids))
