"""Which tables outgrew their planner statistics (pure rule)."""

from __future__ import annotations

from triggerd.store.statistics import TableSize
from triggerd.table_statistics import FLOOR_PAGES, GROWTH, MIN_PAGES, outgrown


def size(pages: int, planned: int, table: str = "t") -> TableSize:
    return TableSize(table=table, pages=pages, planned_pages=planned)


def test_a_table_emptied_and_vacuumed_is_analyzed_once_it_has_grown_past_the_minimum() -> None:
    assert outgrown([size(MIN_PAGES - 1, 0)]) == []
    assert outgrown([size(MIN_PAGES, 0)]) == ["t"]


def test_a_table_is_analyzed_when_it_grew_more_than_growth_times_its_planned_size() -> None:
    assert outgrown([size(GROWTH * 1000, 1000)]) == []
    assert outgrown([size(GROWTH * 1000 + 1, 1000)]) == ["t"]


def test_small_planned_sizes_count_as_the_floor() -> None:
    # 40 pages planned at 1 page is 40 times, but below the minimum: nothing to gain.
    assert outgrown([size(40, 1)], minimum=1) == ["t"]
    assert outgrown([size(GROWTH * FLOOR_PAGES, 1)], minimum=1) == []


def test_a_big_table_that_autovacuum_keeps_up_with_is_left_alone() -> None:
    assert outgrown([size(2_000_000, 1_900_000), size(500, 400, "u")]) == []


def test_only_the_outgrown_tables_are_named_in_order() -> None:
    sizes = [size(10_000, 100, "a"), size(10_000, 9_000, "b"), size(70, 0, "c")]
    assert outgrown(sizes) == ["a", "c"]
