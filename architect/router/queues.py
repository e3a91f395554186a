"""SizedQueue: a first-in first-out queue that knows the total size of what it holds, so a
queue can be bounded by bytes as well as by count (sizes: protocol.data_size)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class SizedQueue(Generic[T]):
    __slots__ = ("_items", "size")

    def __init__(self) -> None:
        self._items: deque[tuple[T, int]] = deque()
        self.size = 0  # the sum of the sizes of what it holds

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __iter__(self) -> Iterator[T]:
        return (item for item, _ in self._items)

    def __getitem__(self, index: int) -> T:
        return self._items[index][0]

    def append(self, item: T, size: int) -> None:
        self._items.append((item, size))
        self.size += size

    def appendleft(self, item: T, size: int) -> None:
        self._items.appendleft((item, size))
        self.size += size

    def popleft(self) -> T:
        item, size = self._items.popleft()
        self.size -= size
        return item

    def over(self, max_items: int, max_size: int) -> bool:
        return len(self._items) > max_items or self.size > max_size

    def fits(self, size: int, max_items: int, max_size: int) -> bool:
        """Whether one more item of `size` would keep it within the bounds."""
        return len(self._items) < max_items and self.size + size <= max_size
