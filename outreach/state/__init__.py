"""Customer state and the delivery ledger: tables, sessions, ingest, migrations.

The only package that knows SQL rows.
"""
