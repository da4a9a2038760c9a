"""The ERP side of finance (SPEC §9): the local Tryton launcher and the JSON-RPC client of the poster."""
