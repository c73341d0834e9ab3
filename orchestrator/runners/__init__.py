"""How steps reach hosts: small one-method interfaces, real implementations, and fakes.

`PlaybookRunner.run_playbook` (ansible-runner) and `CommandRunner.run_command`
(a local shell or fabric over SSH) are all the engine knows. Each real runner
translates its library's errors into ours at the boundary; the fakes in
`runners.fake` take a handler function, as httpx's MockTransport does.

One contract for all of them (`runners.base`): a failed host's `Result` carries a
`FailureKind` (exit, timeout, unreachable, cancelled) that retry policies read; the
cancel token and the request's timeout stop the work on the host itself; and every SSH
connection gives up on a silent peer after `SshSettings` keepalive x count seconds.
Real runners take the project's `ssh:` settings when built: `HostCommandRunner(ssh)`,
`SshCommandRunner(ssh)`, `AnsiblePlaybookRunner(forks, ssh)`.
"""
