"""Faust tables (RocksDB) and the typed accessors agents and web views use to read and write them."""
