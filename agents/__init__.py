"""Faust agents: one module per stage. Each reads, calls the domain, writes; nothing more."""
