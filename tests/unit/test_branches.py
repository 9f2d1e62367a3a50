"""The path a conversation shows, and the versions of its messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from chat.branches import Tree, Versions

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


# 1 ─ 2 ─ 3 ─ 4         a linear start
#      └─ 5             a regenerated answer to 1 (chosen when made)
#            └ ...      nothing under it
LINEAR = [(1, None, at(0)), (2, 1, at(1)), (3, 2, at(2)), (4, 3, at(3))]


def test_a_linear_conversation_shows_every_message_in_order():
    assert Tree(reversed(LINEAR)).path() == [1, 2, 3, 4]
    assert Tree([]).path() == []
    assert Tree([]).leaf() is None


def test_the_newest_chosen_child_is_shown_at_each_fork():
    tree = Tree([*LINEAR, (5, 1, at(4))])
    assert tree.path() == [1, 5]
    assert tree.versions(5) == [2, 5]
    assert tree.versions(2) == [2, 5]


def test_switching_back_restores_the_branch_chosen_below():
    # 3 has two answers (4 and 6); 6 was chosen; then 5 (a sibling of 2) was made.
    rows = [*LINEAR, (6, 3, at(5)), (5, 1, at(6))]
    assert Tree(rows).path() == [1, 5]
    switched = [row if row[0] != 2 else (2, 1, at(7)) for row in rows]
    assert Tree(switched).path() == [1, 2, 3, 6]


def test_ties_go_to_the_newer_message():
    assert Tree([(1, None, at(0)), (2, 1, at(1)), (3, 1, at(1))]).path() == [1, 3]


def test_ancestry_and_path_from():
    tree = Tree([*LINEAR, (5, 1, at(4))])
    assert tree.ancestry(4) == [1, 2, 3, 4]
    assert tree.ancestry(1) == [1]
    assert tree.path_from(2) == [2, 3, 4]


def test_an_edited_first_message_is_a_second_root():
    tree = Tree([*LINEAR, (7, None, at(9)), (8, 7, at(9))])
    assert tree.path() == [7, 8]
    assert tree.versions(1) == [1, 7]


def test_versions_for_the_control():
    middle = Versions([4, 9, 12], 9)
    assert (middle.number, middle.count, middle.previous, middle.next) == (2, 3, 4, 12)
    assert Versions([4, 9], 4).previous is None
    assert Versions([4, 9], 9).next is None
    assert middle.attribute == "4,9,12"
