"""Governance: rate limits, token quotas and money budgets per API key and team, and cost
accounting from measured throughput. The limiter is pure logic; the server's glue is in
:mod:`hearth.server.quotas`."""
