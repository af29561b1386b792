"""platform_infra: the job-orchestration platform's Pulumi components (`platform_infra.components`), its
program (`platform_infra.stacks`), policy pack (`platform_infra.policies`) and the `infra` command
(`platform_infra.infra`).

The repository root is this package's directory (pyproject.toml `package-dir`): its top-level folders are
the subpackages, installed under this one name so that they never clash with a user's own `components` or
`infra` package."""
