"""How steps reach hosts: small one-method interfaces, real implementations, and fakes.

`PlaybookRunner.run_playbook` (ansible-runner) and `CommandRunner.run_command`
(a local shell or fabric over SSH) are all the engine knows. Each real runner
translates its library's errors into ours at the boundary; the fakes in
`runners.fake` take a handler function, as httpx's MockTransport does.
"""
