"""The engine: runs a phase on hosts as a journaled state machine, and rolls it back.

- `lifecycle.RunLifecycle`: starts, rolls back and ends every run. **A rollback
  begins in `RunLifecycle.roll_back`, and only there.**
- `phase_run.PhaseRun`: the forward run, wave by wave and step by step, with the
  failure budget (`waves.FailureBudget`).
- `rollback.Rollback`: the undo of a phase on hosts, in reverse step order.
- `actions`: one small class per step kind and per undo kind.
- `context.StepContext`: what every action is given; `fanout.fan_out`: per-host
  concurrency; `refusals`: why a phase may not start; `checksums`: what changed.

It is built from parts passed in (journal, runners, clock, prompter, monitor), so
tests hand it fakes and the CLI hands it the real ones. It never exits the process
and never prints directly: outcomes are `RunOutcome`s, lines go to `say`.
"""
