"""A worker stops on a positions table laid out otherwise than inventory.movements' partitioner says
(tables/restore.py, LAID_OUT_LIKE): data from before the SKU partitioning, without Kafka."""
from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from app.partitions import key_partition, misplaced_keys, sku_partition
from app.topics import MOVEMENTS
from tables import definitions, names
from tables.restore import EXIT_WRONG_LAYOUT, LAID_OUT_LIKE, BulkRestoringStore

PARTITIONS = 8
KEYS = [f"SKU-{n:04d}@STORE-{n % 7}".encode() for n in range(400)]


def whole_key_partition(key: bytes) -> int:
    """Where a version before the SKU partitioning put a position: the hash of the whole key, as for
    any topic not partitioned by SKU (its changelog, for one)."""
    return key_partition("app-positions-changelog", key, PARTITIONS)


def by_sku_partition(key: bytes) -> int:
    return sku_partition(key.decode().partition("@")[0], PARTITIONS)


def by_partition(place) -> dict[int, list[bytes]]:
    laid_out: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
    for key in KEYS:
        laid_out[place(key)].append(key)
    return laid_out


by_sku = by_partition(by_sku_partition)
by_whole_key = by_partition(whole_key_partition)


def test_keys_in_their_skus_partition_are_in_place_and_keys_hashed_whole_mostly_are_not():
    assert all(misplaced_keys(MOVEMENTS, keys, p, PARTITIONS) == [] for p, keys in by_sku.items())
    misplaced = sum(len(misplaced_keys(MOVEMENTS, keys, p, PARTITIONS)) for p, keys in by_whole_key.items())
    assert misplaced > len(KEYS) * 3 // 4   # 7 in 8 by chance


class StoreOf:
    """What `check_layout` reads of its store: the table's name and each partition's keys."""

    def __init__(self, laid_out: dict[int, list[bytes]]) -> None:
        self.table = SimpleNamespace(name=names.POSITIONS)
        self.laid_out = laid_out

    def _db_for_partition(self, partition: int) -> int:
        return partition

    def _visible_items(self, partition: int):
        return ((key, b"{}") for key in self.laid_out[partition])

    def restored_from(self) -> str:
        return "app-positions-changelog"


def check(laid_out: dict[int, list[bytes]]) -> list[int]:
    exits: list[int] = []
    BulkRestoringStore.check_layout(StoreOf(laid_out), list(laid_out), PARTITIONS, exit_=exits.append)
    return exits


def test_the_position_stage_tables_are_checked_against_the_movements_partitioner():
    import tables.sku_networks  # noqa: F401  (defined by the position stage)
    assert definitions.positions.table.name == names.POSITIONS
    assert LAID_OUT_LIKE[names.POSITIONS] == LAID_OUT_LIKE[names.SKU_NETWORKS] == MOVEMENTS


def test_a_worker_on_positions_laid_out_by_the_whole_key_stops_with_its_own_exit_code(caplog):
    with caplog.at_level(logging.CRITICAL):
        assert check(by_whole_key) == [EXIT_WRONG_LAYOUT]
    assert "new APP_ID" in caplog.text


@pytest.mark.parametrize("laid_out", [by_sku, {p: [] for p in range(PARTITIONS)}], ids=["by SKU", "empty"])
def test_a_worker_on_positions_laid_out_by_sku_or_on_none_goes_on(laid_out):
    assert check(laid_out) == []


def test_a_stray_key_among_well_placed_ones_is_reported_but_does_not_stop_the_worker(caplog):
    stray = next(key for key in KEYS if whole_key_partition(key) != by_sku_partition(key))
    laid_out = {p: list(keys) for p, keys in by_sku.items()}
    laid_out[whole_key_partition(stray)].append(stray)
    with caplog.at_level(logging.WARNING):
        assert check(laid_out) == []
    assert "sit outside their partition" in caplog.text
