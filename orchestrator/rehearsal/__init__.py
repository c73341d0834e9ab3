"""Fire drills on a sandbox (`migrate rehearse`), apart from any one migration.

- `scenario.py`: reads and checks the project's `rehearsals/<name>.yaml` (FILE:LINE).
- `sandbox.py`: the sandbox's directories, faults files, ports and processes.
- `checks.py`: judges a drill by the sandbox's real state against `expect:`.
- `rehearse.py`: runs one scenario end to end and writes its report.

The scenarios, the sandbox inventories and the stand-in agent are project files;
nothing here names a host, a port or a scenario.
"""
