"""Where runs are recorded, and who may act on a host.

journal.py   the journal's rules (transitions, locks, reaping), over a store
sqlite.py    the embedded store: .migrate/state.db (default; one operator, one machine)
postgres.py  the team store: a PostgreSQL database (`state.url`), psycopg 3
base.py      the store interface and the state.timeout rule (JournalUnavailableError)
schema.py    the one versioned schema and its in-place upgrade
locks.py     locks that die with their holder: advisory-lock sessions, flock
leader.py    HA watch: one active watcher per host set
open.py      `state:` settings and opening the right store
copy.py      `migrate state copy --to URL`
recorder.py  what the engine writes through (journal, dry run)
proc.py      process identity for the embedded store's lock liveness
"""
