"""Retail inventory & financial sync pipeline (Faust on Apache Kafka)."""
