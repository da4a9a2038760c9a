"""Operators' web views (SPEC §7), served by every worker through Faust's aiohttp server."""
