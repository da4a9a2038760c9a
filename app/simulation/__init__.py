"""A realistic simulated retail workload: master data and every channel's raw events."""
