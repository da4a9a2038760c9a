"""Our murmur2 is Kafka's: every key lands in the partition the Java client and aiokafka pick."""
from __future__ import annotations

from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from app.partitions import murmur2


@given(st.binary(max_size=200))
def test_murmur2_is_aiokafkas_for_any_bytes(data: bytes):
    assert murmur2(data) == aiokafka_murmur2(data)


def test_murmur2_of_the_java_clients_test_vectors():
    # org.apache.kafka.common.utils.UtilsTest.testMurmur2, as unsigned 32-bit values
    cases = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536,
             b"a-little-bit-longer-string": -1486304829,
             b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971, b"abc": 479470107}
    assert {key: murmur2(key) for key in cases} == {key: value & 0xFFFFFFFF for key, value in cases.items()}
