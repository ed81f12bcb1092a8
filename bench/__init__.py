"""The Outreach benchmark harness (issue 6): how fast the app and the sync server are, measured on
real parts (a real `outreach-server` process on loopback, real SQLite files on disk), next to the
limits of the same machine measured in the same run.

    python -m bench            full scale: 1,000 persons and 100,000 contacts (``--scale 10`` for 10x)
    python -m bench --quick    a smaller data set and fewer devices, within a minute on 2 cores

Both print a table and write ``bench/results.json``. ``docs/PERFORMANCE.md`` explains each figure.

Modules: `run` (the command line and the order of the figures), `figures` (the device figures:
generation, push, pull, unlock, save, search, round trip), `load` (many simulated devices against
one server), `limits` (the machine's limits), `procs` (server and blob-server processes),
`wire` (byte counting on the client's HTTP session), `stats` (percentiles, the table, the JSON),
`profiling` (optional pyinstrument / py-spy profiles of each phase).
"""
